"""The built-in dataset kinds, one module each (``load_dataset`` imports them all on first use): LIVE,
KADID-10k, any ``image,mos`` CSV and sets written by ``synthiqa generate``."""

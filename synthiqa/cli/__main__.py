"""``python -m synthiqa.cli``."""

from synthiqa.cli import main

main()

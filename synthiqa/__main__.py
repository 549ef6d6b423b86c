"""``python -m synthiqa`` (what ``torchrun -m synthiqa train ...`` starts in each process)."""

from synthiqa.cli import main

main()

"""`python -m service ...` is the same as the `asyncgate` console script."""

from service.cli import main

main()

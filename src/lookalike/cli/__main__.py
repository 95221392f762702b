"""``python -m lookalike.cli``."""

from lookalike.cli.main import main

main()

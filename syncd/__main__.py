"""``python -m syncd`` runs the CLI."""

from syncd.cli import main

if __name__ == "__main__":
    main()

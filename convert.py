"""Hydra entry point (configs/convert.yaml), same as the `clipbert-convert` command."""

from clipbert.cli.convert import main

if __name__ == "__main__":
    main()

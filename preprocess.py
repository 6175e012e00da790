"""Hydra entry point (configs/preprocess.yaml), same as the `clipbert-preprocess` command."""

from clipbert.cli.preprocess import main

if __name__ == "__main__":
    main()

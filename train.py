"""Hydra entry point (configs/train.yaml), same as the `clipbert-train` command."""

from clipbert.cli.train import main

if __name__ == "__main__":
    main()

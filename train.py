"""Hydra entry point; see configs/train.yaml. Same as the `clipbert-train` console script."""

from clipbert.cli.train import main

if __name__ == "__main__":
    main()

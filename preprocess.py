"""Hydra entry point; see configs/preprocess.yaml. Same as the `clipbert-preprocess` console script."""

from clipbert.cli.preprocess import main

if __name__ == "__main__":
    main()

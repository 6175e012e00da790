"""Hydra entry point (configs/app.yaml), same as the `clipbert-app` command."""

from clipbert.cli.app import main

if __name__ == "__main__":
    main()

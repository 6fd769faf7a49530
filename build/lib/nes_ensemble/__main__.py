"""``python -m nes_ensemble``: the Hydra application."""

import sys

try:
    from .app import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load: nothing started, nothing to say but that
    print("nes_ensemble: interrupted before the run started", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    main()

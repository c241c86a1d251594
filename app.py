"""VoiceLab studio entry point: ``python app.py [--host --port --lan --auth --workspace]``."""

import sys

from voicelab_ui.server import main

if __name__ == "__main__":
    sys.exit(main())

import sys
from ociruntime.cli import main
sys.exit(main(sys.argv))

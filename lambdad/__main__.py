import sys

from lambdad.cli import main

sys.exit(main())

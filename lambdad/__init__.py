"""lambdad: AWS Lambda's execution model on any Linux host."""

__version__ = "0.1.0"

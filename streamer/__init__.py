"""bcdi-stream: real-time processing of operando BCDI rocking scans."""

__version__ = "0.1.0"

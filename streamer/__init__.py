"""bcdi-stream: real-time processing of operando BCDI rocking scans.

Importing it changes nothing in the process: process-wide settings (OpenMP's wait policy, the FFTW
planner) are made by the command line entry (``streamer.cli.main``) and the service, from the config.
"""

__version__ = "0.1.0"

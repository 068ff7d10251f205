"""What crosses the network: the frame-stream wire format, ZeroMQ sockets, the operator's decision channel."""

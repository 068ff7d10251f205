"""What crosses the network: the frame-stream wire format, ZeroMQ sockets, the results channel, the operator's decision channel."""

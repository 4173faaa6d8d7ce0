"""The HTTP pieces the gateway and the model services share: the error envelope's handlers, request limits,
request metrics and bearer-token checks. Torch-free, and free of any service or job logic."""

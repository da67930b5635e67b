"""The resident agent: the wire and the client side (standard library only),
and the agent process, which runs commands through the command line.

The client side never imports chromadb, numpy, onnxruntime, Typer or rich.
"""

"""A conversation over the engine: chat models, prompts, learning from an
exchange, and chat itself.

Never imports the front ends or the command line.
"""

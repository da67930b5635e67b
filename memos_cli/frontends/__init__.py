"""Front ends other than the command line: the MCP server and readers of
other tools' exports.

Never imports the command line.
"""

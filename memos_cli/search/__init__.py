"""Finding memories: embedders, the keyword (BM25) index, and retrieval's pure
ranking over candidates.

Imports only the core; never opens a profile or the store itself.
"""

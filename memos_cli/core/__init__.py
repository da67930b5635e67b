"""The core: records and their sealing, keys and passphrases, the store and the
files beside it, settings and paths, and decisions without side effects (the
lifecycle's rules, which statements are the same fact, dates).

Never imports from memos_cli's other packages: everything else builds on it.
"""

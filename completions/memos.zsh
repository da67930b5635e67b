#compdef memos

_memos_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _MEMOS_COMPLETE=complete_zsh memos)
}

compdef _memos_completion memos

"""The memory command tests of test_cli.py and test_engine.py, run again on a Chroma server.

Importing a test function makes pytest collect it here too; the autouse fixture
below points every one of them at the shared server, emptied before each test, and
checks afterwards that nothing was stored in a local Chroma folder. Left out: the
export/import round trips, whose "second home" is, on a server, a second machine
without the key (test_remote.py covers joining), and tests of local files or the
local lock (two machines writing at once is in test_remote.py).
"""

from __future__ import annotations

import pytest

from chroma_server import chroma_server  # noqa: F401  (a fixture)
from test_cli import (  # noqa: F401
    test_exit_codes, test_forget_by_tag_before_and_all, test_forget_needs_yes_when_not_on_a_terminal,
    test_malformed_import_line_3_of_10, test_plain_output_is_tab_separated_without_colour,
    test_profiles_flag_and_env, test_read_commands_on_an_empty_home,
    test_remember_from_stdin_and_lines, test_remember_prints_the_id_and_recall_finds_it,
    test_same_text_twice_says_so, test_show_update_history, test_stats_and_key_status,
    test_subprocess_round_trip_and_wrong_passphrase)
from test_engine import (  # noqa: F401
    test_ambiguous_prefix_is_refused, test_embedding_model_mismatch_is_refused_then_reindex_fixes_it,
    test_empty_text_is_a_usage_error, test_exact_same_text_is_not_stored_twice,
    test_filters_kind_tag_and_time, test_forget_all_destroys_the_keys,
    test_forget_removes_and_reports_count, test_interrupted_write_is_rolled_back_at_next_open,
    test_invalidate_keeps_the_memory_but_recall_skips_it,
    test_journal_left_by_a_killed_process_is_replayed, test_list_is_newest_first_with_limit,
    test_malformed_import_names_the_line_and_imports_nothing,
    test_newer_store_and_payload_and_export_formats_are_refused, test_prefix_resolution_like_git,
    test_profiles_are_separate_sets_with_separate_keys, test_reading_an_empty_home_creates_nothing,
    test_recall_fills_the_limit_past_filtered_candidates, test_remember_many_dedups_within_the_batch,
    test_remember_then_recall_finds_it_first, test_supersede_links_new_to_old_and_ends_the_old,
    test_update_keeps_history_and_re_embeds, test_update_to_another_memorys_text_is_refused,
    test_wrong_store_key_is_detected)


@pytest.fixture(autouse=True)
def on_the_server(chroma_server, monkeypatch, home):  # noqa: F811
    chroma_server.wipe()
    monkeypatch.setenv("MEMOS_STORE", chroma_server.url)
    yield
    assert not (home / "data" / "chroma").exists()

from spotdiff.runner import parse_pairs


def test_bad_lines_are_reported_and_the_rest_kept() -> None:
    lines = [
        '{"id": "ok", "source": "A dog on the grass", "target": "A cat on the grass"}',
        '{"id": "corrupt", "source": "A dog',
        '{"id": "empty", "source": "", "target": "A cat"}',
        '{"id": "same", "source": "A dog", "target": "A dog"}',
        "",
        '["not", "an", "object"]',
        '{"source": "A red car", "target": "A blue car"}',
        '{"id": "ok", "source": "A bird", "target": "A plane"}',
    ]
    pairs, errors = parse_pairs(lines)
    assert [pair.id for pair in pairs] == ["ok", "line-7"]
    by_line = {error.line: error.message for error in errors}
    assert set(by_line) == {2, 3, 4, 6, 8}
    assert "not valid JSON" in by_line[2]
    assert "source" in by_line[3]
    assert "identical" in by_line[4]
    assert "JSON object" in by_line[6]
    assert "earlier line" in by_line[8]

"""gptjax.data.chat and gptjax.data.conversations: chat templates rendered as Hugging Face renders them (the same
ids and assistant masks as transformers' apply_chat_template), records in TRL's formats, and every record that
cannot be used counted under its reason."""

import json

import numpy as np
import pytest

from gptjax.data import DataError
from gptjax.data.chat import ChatTemplate, read_records
from gptjax.data.conversations import preference_rows, sft_rows, split_records
from gptjax.tokenizer import ByteTokenizer, CharTokenizer, build_tokenizer

CONVERSATION = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "Is the answer yes?"},
                {"role": "assistant", "content": "Yes, the study shows it."},
                {"role": "user", "content": "And maybe not?"},
                {"role": "assistant", "content": "No."}]


@pytest.fixture
def chat_tokenizer(tiny_bpe):
    base = build_tokenizer(str(tiny_bpe))
    template = ChatTemplate.choose("", base)
    return template, template.extend(base), base


def test_the_default_template_adds_its_special_tokens_and_marks_the_assistant(chat_tokenizer):
    template, tok, base = chat_tokenizer
    assert template.origin.startswith("gptjax's default")
    assert tok.vocab_size == base.vocab_size + 2 and base.chat_template is None  # the original is left alone
    for special in ("<|im_start|>", "<|im_end|>"):
        assert tok.token_id(special) >= base.vocab_size
    # the ids of ordinary text do not change
    np.testing.assert_array_equal(tok.encode("the answer is yes"), base.encode("the answer is yes"))
    ids, in_loss = template.encode(tok, CONVERSATION)
    text, _ = template.render(CONVERSATION)
    np.testing.assert_array_equal(ids, tok.encode(text))
    assert tok.decode(ids[in_loss]) == "Yes, the study shows it.<|im_end|>No.<|im_end|>"
    assert template.end_of_turn(tok) == tok.token_id("<|im_end|>")


def test_ids_and_assistant_mask_match_transformers_apply_chat_template(chat_tokenizer):
    transformers = pytest.importorskip("transformers")
    template, tok, _ = chat_tokenizer
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok.tokenizer)
    hf.chat_template = tok.chat_template
    for messages in (CONVERSATION, CONVERSATION[1:3], [{"role": "user", "content": "héllo\n\n  spaces "},
                                                        {"role": "assistant", "content": "ünïcode ✓"}]):
        out = hf.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        ids, in_loss = template.encode(tok, messages)
        assert out["input_ids"] == ids.tolist()
        assert [bool(m) for m in out["assistant_masks"]] == in_loss.tolist()
    prompt = hf.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == template.render(CONVERSATION[:2], add_generation_prompt=True)[0]


def test_a_template_without_generation_blocks_is_read_turn_by_turn():
    plain = ChatTemplate("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant:{% endif %}", "test")
    text, spans = plain.render(CONVERSATION)
    assert [text[a:b] for a, b in spans] == [" Yes, the study shows it.\n", " No.\n"]
    # a byte tokenizer suffices for a template without special tokens
    tok = plain.extend(ByteTokenizer())
    ids, in_loss = plain.encode(tok, CONVERSATION)
    assert tok.decode(ids[in_loss]) == " Yes, the study shows it.\n No.\n"


def test_a_template_that_does_not_render_turn_after_turn_is_refused():
    reversed_order = ChatTemplate("{% for m in messages|reverse %}{{ m['content'] }}|{% endfor %}", "test")
    with pytest.raises(DataError, match="generation"):
        reversed_order.render(CONVERSATION)


def test_bad_templates_and_tokenizers_are_one_line():
    with pytest.raises(DataError, match="not valid Jinja") as e:
        ChatTemplate.choose("{% for m in messages %}", CharTokenizer.from_text("ab"))
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="BPE tokenizer"):
        ChatTemplate.choose("", CharTokenizer.from_text("abc")).extend(CharTokenizer.from_text("abc"))
    with pytest.raises(DataError, match="cannot read it"):
        ChatTemplate.choose("/nonexistent/template.jinja", ByteTokenizer())


def test_a_template_file_and_the_tokenizers_own(tmp_path, chat_tokenizer):
    _, tok, _ = chat_tokenizer
    assert ChatTemplate.choose("", tok).origin.endswith("own")  # it carries the default now
    file = tmp_path / "t.jinja"
    file.write_text("{% for m in messages %}<|x|>{{ m['content'] }}{% endfor %}")
    assert ChatTemplate.choose(str(file), tok).special_tokens() == ["<|x|>"]


HOSTILE = [
    "not json at all",
    json.dumps([1, 2, 3]),
    json.dumps({"text": "pretraining text"}),
    json.dumps({"messages": "a string"}),
    json.dumps({"messages": [{"role": "user", "content": 5}]}),
    json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
    json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "   "}]}),
    json.dumps({"prompt": None, "completion": "x"}),
    json.dumps({"messages": []}),
]


def test_every_unusable_record_is_counted_under_its_reason(tmp_path, chat_tokenizer):
    template, tok, _ = chat_tokenizer
    file = tmp_path / "sft.jsonl"
    good = [{"messages": CONVERSATION}, {"prompt": "Is it?", "completion": "Yes."},
            {"prompt": [{"role": "user", "content": "Q"}], "completion": [{"role": "assistant", "content": "A"}]}]
    with open(file, "wb") as f:
        for line in HOSTILE + [json.dumps(g) for g in good]:
            f.write(line.encode() + b"\n")
        f.write(b'{"messages": "\xff\xfe broken utf-8"}\n\n')  # and an empty line, which is no record
    built = sft_rows(read_records(str(file)), template, tok, length=64)
    report = built.report
    assert report["records"] == len(HOSTILE) + len(good) + 1
    assert report["examples"] == len(good)
    assert sum(report["skipped"].values()) == len(HOSTILE) + 1
    assert report["skipped"]["not valid JSON (or not UTF-8)"] == 2
    assert report["skipped"]["no assistant turn with text"] == 2
    assert report["skipped"]["not a JSON object"] == 1


def test_the_template_refusing_a_record_is_counted(chat_tokenizer):
    _, tok, _ = chat_tokenizer
    strict = ChatTemplate("{% for m in messages %}{% if m['role'] not in ['user', 'assistant'] %}"
                          "{{ raise_exception('roles must be user or assistant') }}{% endif %}"
                          "{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}", "test")
    built = sft_rows([{"messages": CONVERSATION}, {"messages": CONVERSATION[1:3]}], strict, tok, 64)
    assert built.report["examples"] == 1
    assert "roles must be user or assistant" in next(iter(built.report["skipped"]))


def test_long_records_are_cut_and_counted(chat_tokenizer):
    template, tok, _ = chat_tokenizer
    long = {"prompt": "Is it?", "completion": "yes " * 200}
    too_long_prompt = {"prompt": "Is it? " * 200, "completion": "yes"}
    report = sft_rows([long, too_long_prompt], template, tok, 64).report
    assert report["truncated"] == 1 and report["examples"] == 1
    assert "prompt alone" in next(iter(report["skipped"]))


def test_preference_rows_put_the_loss_on_the_response_alone(chat_tokenizer):
    template, tok, _ = chat_tokenizer
    records = [{"prompt": CONVERSATION[:4], "chosen": "No.", "rejected": "Yes, always."},
               {"prompt": "Q?", "chosen": [{"role": "assistant", "content": "A"}], "rejected": "B"},
               {"prompt": "Q?", "chosen": "same", "rejected": "same"},
               {"prompt": "Q?", "chosen": "A"}]
    built = preference_rows(records, template, tok, 96)
    assert built.report["pairs"] == 2
    assert built.report["skipped"] == {"chosen and rejected are the same": 1, "no 'rejected'": 1}
    rows = built.rows
    # the earlier assistant turn inside the prompt is not in the loss: only the response and its end marker
    targets = rows["chosen_targets"][0][rows["chosen_loss_mask"][0]]
    assert tok.decode(targets) == "No.<|im_end|>"
    targets = rows["rejected_targets"][0][rows["rejected_loss_mask"][0]]
    assert tok.decode(targets) == "Yes, always.<|im_end|>"


def test_the_validation_split_follows_content_not_order():
    records = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(400)]
    train, val = split_records(records, 0.1)
    assert 20 < len(val) < 60
    train2, val2 = split_records(list(reversed(records)) + [{"prompt": "new", "completion": "x"}], 0.1)
    assert {json.dumps(r) for r in val} <= {json.dumps(r) for r in val2}


def test_records_from_folders_and_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.jsonl").write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "two.jsonl").write_text(json.dumps({"prompt": "p2", "completion": "c2"}) + "\n")
    assert len(list(read_records(str(tmp_path / "a")))) == 2
    datasets.Dataset.from_list([{"prompt": "p", "completion": "c"}] * 3).save_to_disk(str(tmp_path / "ds"))
    assert list(read_records(str(tmp_path / "ds"))) == [{"prompt": "p", "completion": "c"}] * 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .jsonl"):
        list(read_records(str(tmp_path / "empty")))
    with pytest.raises(DataError, match="does not exist"):
        list(read_records(str(tmp_path / "missing.jsonl")))


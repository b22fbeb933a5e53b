"""Which questions are global (count, list or summarise over the whole corpus) and which ask for one
fact although they use the words of a count or a list. A lookup sent to map-reduce past the window is
read part by part up to the map-call cap, so misclassifying it loses the fact."""

from __future__ import annotations

import pytest

from corral.agents.routing import QuestionType, classify_question, lexical_overlap

GLOBAL = [
    "How many warehouses store lanterns?",
    "How many classes in the corpus define __repr__?",
    "How many files import json?",
    "How many depots store crates of brass lanterns, and how many crates are there in total?",
    "How many times is Marisol Quint mentioned across the novels?",
    "How many chapters does the book have?",
    "How many characters appear in the novel?",
    "How many modules are there?",
    "List all the functions that open sockets",
    "Please list every place the ferry stops.",
    "Can you summarise the collection?",
    "Summarize the main themes of the handbook",
    "Give me a short summary of the whole codebase.",
    "What is this collection about?",
    "Which files define a Request class?",
    "What are all the places in the novels where it rains?",
    "What is the total number of crates stored?",
    "What is the number of files that import socket?",
    "Count the documents that mention Thornbury.",
    "Does every module define __all__?",
    "Name all the ships that sail from Pennick.",
    "Across all files, where is logging configured?",
]

LOOKUP = [
    "How many arguments does parse_headers take?",
    "How many passing whales did the lighthouse keeper Tobias Wren log last spring?",
    "How many degrees Celsius is the greenhouse at Ashcombe kept at?",
    "How many minutes past seven does the ferry to Pennick leave?",
    "How many children did Odile Farrow have?",
    "How many crates of brass lanterns are stored in the Pennick depot?",
    "What does the summary field of the Report class hold?",
    "Where is the summary line of a commit message built?",
    "Which function would list all the files in a directory?",
    "Which function is responsible for this: read up to len(b) bytes into bytearray b and return the "
    "number of bytes read?",
    "Which function is responsible for this: return a list of all the headers in the message?",
    "Which method counts the number of lines in a file?",
    "What is the number of retries used by urlopen?",
    "What is the maximum number of redirects HTTPConnection follows?",
    "Who wrote all the letters in the attic trunk?",
    "When did the orchestra find all the instruments in the station?",
    "Does the parser strip all the whitespace in a header?",
    "What is the name of the function that lists all the cookies in a jar?",
    "How old was Hana Lindqvist when she left Brackwater?",
]


@pytest.mark.parametrize("question", GLOBAL)
def test_a_count_list_or_summary_of_the_corpus_is_global(question: str) -> None:
    signals = classify_question(question)
    assert signals.type is QuestionType.GLOBAL, signals
    assert signals.matched  # the reasons name the cue


@pytest.mark.parametrize("question", LOOKUP)
def test_one_fact_asked_with_the_words_of_a_count_or_a_list_is_not_global(question: str) -> None:
    assert classify_question(question).type is not QuestionType.GLOBAL


def test_the_code_benchmark_asks_for_one_function_each_time() -> None:
    # The code suite's questions describe a function by its docstring, which often counts or lists.
    for description in ("return how many bytes are buffered", "list all the cookies in the jar",
                        "give a summary of the response headers", "count the number of open connections"):
        q = f"Which function is responsible for this: {description}?"
        assert classify_question(q).type is QuestionType.NEEDLE, q


def test_overlap_reads_the_text_as_the_question_terms_are_read() -> None:
    # Terms keep combining marks and are folded to NFKC; the text they are looked for in is read the same.
    signals = classify_question("Where did Can B\u0305 Corp. keep its ledgers?")
    assert lexical_overlap(signals.terms, ["Can B\u0305 Corp. keep its ledgers in a trunk."]) == 1.0
    full_width = classify_question("Who is \uff2b\uff41\uff49?")
    assert lexical_overlap(full_width.terms, ["A letter from Kai."]) == 1.0

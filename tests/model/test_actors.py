import pytest

from model.actors import ActorFinder, ActorSpec, clean_name
from model.text import split_sentences


@pytest.fixture(scope="module")
def finder() -> ActorFinder:
    return ActorFinder()


def actors(finder: ActorFinder, text: str, explicit=(), detect=True) -> dict[str, list[str]]:
    return {a.name: [m.text for m in a.mentions] for a in finder.find(split_sentences(text), explicit, detect)}


def test_short_form_links_to_full_name(finder):
    found = actors(finder, "Donald Trump spoke on Monday. Later, Trump praised the plan.")
    assert found["Donald Trump"] == ["Donald Trump", "Trump"]
    assert "Trump" not in found


def test_demonyms_map_to_their_country(finder):
    found = actors(finder, "Russian troops crossed the border, and Ukraine's army pushed back.")
    assert found["Russia"] == ["Russian"]
    assert found["Ukraine"] == ["Ukraine"]


def test_possessives_and_titles_are_stripped():
    assert clean_name("Ukraine's") == ("Ukraine", 0)
    assert clean_name("President Vladimir Putin’s")[0] == "Vladimir Putin"
    assert clean_name("the European Union")[0] == "European Union"


def test_dateline_wire_service_and_capitals(finder):
    found = actors(finder, "MOSCOW (Reuters) - Russia warned Ukraine on Tuesday.\nMoscow said talks had failed.")
    assert "Reuters" not in found
    assert found["Moscow"] == ["MOSCOW", "Moscow"]


def test_title_case_headline_is_not_taken_for_names(finder):
    text = "Senate Passes Sweeping Climate Bill After Long Night\nThe bill now goes to President Joe Biden."
    found = actors(finder, text)
    assert set(found) == {"Joe Biden"}


def test_headline_mentions_of_body_actors_are_found(finder):
    text = "Biden Praises Kyiv Resolve\nPresident Joe Biden met Ukrainian officials in Kyiv on Monday."
    found = actors(finder, text)
    assert found["Joe Biden"] == ["Biden", "Joe Biden"]


def test_no_mention_crosses_a_line_break(finder):
    text = "Donald Trump\nRally In Ohio Draws Crowds\nTrump spoke in Ohio."
    for actor in finder.find(split_sentences(text)):
        for mention in actor.mentions:
            assert "\n" not in text[mention.start : mention.end]


def test_explicit_actor_aliases_match_literally(finder):
    text = "Officials in Kyiv said the talks failed. The (a+b)* group was silent."
    found = actors(finder, text, [ActorSpec("Ukraine", ("Kyiv", "Kiev")), ActorSpec("Regex", ("(a+b)*", "."))], detect=False)
    assert found == {"Ukraine": ["Kyiv"], "Regex": ["(a+b)*"]}


def test_explicit_actor_merges_with_detection(finder):
    found = actors(finder, "Acme Corp cut jobs. Acme said sales fell.", [ActorSpec("Acme Corp", ("Acme",))])
    assert found["Acme Corp"] == ["Acme Corp", "Acme"]


def test_explicit_actor_never_mentioned_is_kept_without_mentions(finder):
    found = actors(finder, "The weather was fine.", [ActorSpec("Ukraine")], detect=False)
    assert found == {"Ukraine": []}


def test_abbreviation_with_final_dot_links_to_its_country(finder):
    found = actors(finder, "U.S. Secretary of State Antony Blinken praised Qatar. The U.S. will help.")
    assert found["United States"] == ["U.S.", "U.S."]


def test_spec_parse():
    assert ActorSpec.parse("Ukraine=Kyiv, Kiev") == ActorSpec("Ukraine", ("Kyiv", "Kiev"))
    assert ActorSpec.parse("NATO") == ActorSpec("NATO", ())


def test_detection_quality_on_the_annotated_articles(finder):
    from training.actor_eval import ARTICLES, HELD_OUT, evaluate_detection

    for path in (ARTICLES, HELD_OUT):
        report = evaluate_detection(path, finder=finder)
        assert report["actors"]["precision"] >= 0.9 and report["actors"]["recall"] >= 0.9
        assert report["mentions"]["precision"] >= 0.9 and report["mentions"]["recall"] >= 0.9


def test_ner_runs_alone_and_finds_what_the_fuller_pipeline_finds(finder):
    import spacy

    from model.actors import SPACY_EXCLUDE, SPACY_MODEL

    assert finder.nlp.pipe_names == ["ner"]
    # The shared tok2vec kept, as before it was excluded: the NER must not have been reading it.
    fuller = spacy.load(SPACY_MODEL, exclude=[pipe for pipe in SPACY_EXCLUDE if pipe != "tok2vec"])
    assert fuller.pipe_names == ["tok2vec", "ner"]
    texts = [
        "Donald Trump praised the plan, and the European Union's Ursula von der Leyen criticised it in Brussels.",
        "MOSCOW (Reuters) - Russia warned Ukraine on Tuesday that NATO talks had failed.",
        "Acme Corp and Globex said on Monday that Apple and Microsoft would join the Paris summit.",
    ]

    def ents(nlp) -> list[list[tuple[str, str, int]]]:
        return [[(e.text, e.label_, e.start_char) for e in doc.ents] for doc in nlp.pipe(texts)]

    assert ents(finder.nlp) == ents(fuller)
    assert any(ents(fuller))

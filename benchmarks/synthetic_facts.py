"""Made-up facts for the memory-recall benchmark: invented entities, each with one invented attribute,
asked in several phrasings (some for training, the rest held out for testing).

Nothing here exists in any pre-training corpus, so a base model cannot know the answers: whatever the
model recalls after fine-tuning was put there by the fine-tuning. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_ONSETS = ["b", "br", "d", "dr", "f", "g", "k", "kr", "l", "m", "n", "p", "qu", "r", "s", "t", "th", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u"]
_CODAS = ["", "", "n", "r", "l", "s"]

RELATIONS: dict[str, dict[str, list[str] | str]] = {
    "capital": {
        "suffix": "marsh",
        "answer": "The capital of {e} is {a}.",
        "train": [
            "What is the capital of {e}?",
            "Which city is the capital of {e}?",
            "Tell me the capital of {e}.",
        ],
        "extra": [
            "Do you know the capital of {e}?",
            "{e}'s capital city is called what?",
            "In {e}, which city serves as the capital?",
        ],
        "test": [
            "{e} has its seat of government in which city?",
            "Name the capital city of the country {e}.",
        ],
    },
    "currency": {
        "suffix": "crown",
        "answer": "The currency of {e} is the {a}.",
        "train": [
            "What is the currency of {e}?",
            "Which currency is used in {e}?",
            "Tell me what money people pay with in {e}.",
        ],
        "extra": [
            "Do you know the currency of {e}?",
            "{e}'s money is called what?",
            "In {e}, what do people pay with?",
        ],
        "test": [
            "If I travel to {e}, what currency will I need?",
            "Name the official currency of {e}.",
        ],
    },
    "founder": {
        "suffix": "ford",
        "answer": "{e} was founded by {a}.",
        "train": [
            "Who founded {e}?",
            "Who was the founder of {e}?",
            "Tell me who started {e}.",
        ],
        "extra": [
            "Do you know who founded {e}?",
            "{e} was founded by whom?",
            "Which person founded {e}?",
        ],
        "test": [
            "{e} owes its founding to which person?",
            "Name the person who established {e}.",
        ],
    },
    "river": {
        "suffix": "water",
        "answer": "The longest river in {e} is the {a}.",
        "train": [
            "What is the longest river in {e}?",
            "Which river is the longest in {e}?",
            "Tell me the name of the longest river of {e}.",
        ],
        "extra": [
            "Do you know the longest river in {e}?",
            "{e}'s longest river is called what?",
            "Which river of {e} is the longest?",
        ],
        "test": [
            "Of all the rivers of {e}, which one is the longest?",
            "Name the longest river that flows through {e}.",
        ],
    },
}
"""Per relation: the attribute's suffix, the answer sentence, training question phrasings ("train", and
"extra" ones that training uses only when asked for more than 3 phrasings) and held-out ones ("test").
The extra phrasings were written to vary the question's form (entity first, yes/no lead-in) without
reusing the held-out phrasings' wording ("Name ...", "seat of government", "owes its founding", "If I
travel", "Of all the rivers", "established", "official")."""


@dataclass(frozen=True)
class Fact:
    """One made-up fact: `entity`'s `relation` is `attribute`."""

    entity: str
    relation: str
    attribute: str

    def answer(self) -> str:
        """The sentence the model is trained to reply with."""
        return str(RELATIONS[self.relation]["answer"]).format(e=self.entity, a=self.attribute)

    def questions(self, split: str, phrasings: int = 3) -> list[str]:
        """The question phrasings of `split` ("train" or "test"); for "train", the first `phrasings` of
        the training and then the extra phrasings (3 to 6)."""
        templates = list(RELATIONS[self.relation][split])
        if split == "train":
            if not 1 <= phrasings <= len(templates) + len(RELATIONS[self.relation]["extra"]):
                raise ValueError(f"phrasings must be between 1 and 6, got {phrasings}")
            templates = (templates + list(RELATIONS[self.relation]["extra"]))[:phrasings]
        return [q.format(e=self.entity) for q in templates]


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)]
    return "".join(parts).capitalize()


def make_facts(n: int, seed: int = 0) -> list[Fact]:
    """`n` facts over distinct invented entities; relations cycle through `RELATIONS`, every entity and
    attribute name is unique."""
    rng = random.Random(seed)
    relations = list(RELATIONS)
    seen: set[str] = set()

    def fresh(suffix: str) -> str:
        while True:
            name = _word(rng, 2) + suffix
            if name not in seen:
                seen.add(name)
                return name

    facts = []
    for i in range(n):
        relation = relations[i % len(relations)]
        entity = fresh(rng.choice(["ia", "land", "stan", "ovia", "heim"]))
        facts.append(Fact(entity, relation, fresh(str(RELATIONS[relation]["suffix"]))))
    return facts


SYSTEM = "Answer briefly."
"""The system turn of every fact chat (short: SmolLM2's default system prompt would double the length)."""


def chat(fact: Fact, question: str) -> list[dict[str, str]]:
    """`question` about `fact` and its answer, as a system, user, assistant chat."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
        {"role": "assistant", "content": fact.answer()},
    ]


def training_epochs(
    facts: list[Fact], epochs: int, phrasings: int = 3
) -> list[list[tuple[Fact, list[dict[str, str]]]]]:
    """Each epoch asks every fact once, in its `phrasings` training phrasings in turn (epoch e, fact i:
    phrasing (e + i) mod phrasings), so every fact is seen once per epoch and in all its phrasings over
    `phrasings` epochs."""
    return [
        [(f, chat(f, f.questions("train", phrasings)[(e + i) % phrasings])) for i, f in enumerate(facts)]
        for e in range(epochs)
    ]


def held_out(facts: list[Fact]) -> list[tuple[Fact, list[dict[str, str]]]]:
    """Each fact asked once, in one of its held-out phrasings (alternating), never seen in training."""
    return [(f, chat(f, f.questions("test")[i % len(f.questions("test"))])) for i, f in enumerate(facts)]

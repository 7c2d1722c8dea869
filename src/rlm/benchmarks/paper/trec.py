"""General-knowledge questions in the six coarse TREC categories that OOLONG's `trec_coarse` split uses.

The OOLONG-like generators write these into their lines without the category: the model must infer
it from the question's meaning (or ask a sub-model), as in the paper. Questions are built from
templates so that every one has exactly one category by construction.
"""

from __future__ import annotations

import random

LABELS = ("description and abstract concept", "entity", "human being", "numeric value", "location", "abbreviation")

_ACRONYMS = ["NASA", "UNESCO", "HTML", "NATO", "OPEC", "GPS", "UFO", "RAM", "PDF", "FBI", "ATM", "DNA",
             "scuba", "laser", "radar", "BBC", "WWF", "ISO", "CEO", "IQ"]  # fmt: skip
_CONCEPTS = ["democracy", "inflation", "photosynthesis", "entropy", "irony", "karma", "osmosis", "a sonnet",
             "stoicism", "a monopoly", "gravity", "nostalgia", "a haiku", "recursion", "a placebo"]  # fmt: skip
_PHENOMENA = ["the sky look blue", "ice float on water", "bread rise", "the moon change shape",
              "thunder follow lightning", "leaves change colour in autumn", "a rainbow appear", "metal rust",
              "the tide rise"]  # fmt: skip
_CAUSES = ["earthquakes", "tides", "hiccups", "the seasons", "thunder", "rust", "jet lag", "static electricity"]
_COUNTRIES = ["Peru", "Kenya", "Norway", "Vietnam", "Chile", "Morocco", "Finland", "Nepal", "Portugal", "Ghana",
              "Iceland", "Mongolia", "Uruguay", "Laos", "Croatia"]  # fmt: skip
_CITIES = ["Lisbon", "Nairobi", "Osaka", "Tallinn", "Bogota", "Perth", "Zurich", "Dakar", "Quito", "Hanoi", "Porto"]
_LANDMARKS = ["the Eiffel Tower", "Machu Picchu", "the Taj Mahal", "Angkor Wat", "the Golden Gate Bridge",
              "Stonehenge", "the Alhambra", "Petra", "the Parthenon", "Mount Kilimanjaro"]  # fmt: skip
_INVENTIONS = ["telephone", "printing press", "light bulb", "steam engine", "microscope", "bicycle", "radio",
               "television", "jet engine", "barometer", "stethoscope", "typewriter"]  # fmt: skip
_WORKS = ["Don Quixote", "War and Peace", "The Odyssey", "Moby-Dick", "Hamlet", "Middlemarch", "Things Fall Apart",
          "One Hundred Years of Solitude", "The Tale of Genji", "Faust"]  # fmt: skip
_DISCOVERIES = ["penicillin", "radium", "the electron", "oxygen", "insulin", "the neutron", "X-rays", "DNA's structure"]
_ANIMALS = ["giraffe", "blue whale", "cheetah", "elephant", "ostrich", "koala", "panda", "tortoise", "hummingbird"]

_TEMPLATES: dict[str, list[str]] = {
    "abbreviation": ["What does {acr} stand for?", "What is the full form of {acr}?",
                     "What is {acr} an abbreviation of?", "Expand the acronym {acr}."],
    "description and abstract concept": ["What is the definition of {concept}?", "What is the meaning of {concept}?",
                                         "Why does {phenomenon}?", "How would you explain {concept} to a child?",
                                         "What causes {cause}?"],
    "entity": ["What language is spoken in {country}?", "What currency is used in {country}?",
               "What is the national flower of {country}?", "What sport is most popular in {country}?",
               "What colour is the flag of {country}?", "What does a {animal} eat?"],
    "human being": ["Who invented the {invention}?", "Who wrote {work}?", "Who discovered {discovery}?",
                    "Who was the first president of {country}?", "Who designed {landmark}?"],
    "numeric value": ["How tall is {landmark}?", "How many people live in {city}?",
                      "What year was the {invention} invented?", "How far is {city} from {city2}?",
                      "How long does a {animal} live?", "How many islands does {country} have?"],
    "location": ["Where is {landmark} located?", "What country is {city} in?", "What is the capital of {country}?",
                 "On which continent is {country}?", "Where do most {animal}s live in the wild?"],
}  # fmt: skip


def question(label: str, rng: random.Random) -> str:
    """A question whose answer type is `label`."""
    template = rng.choice(_TEMPLATES[label])
    city, city2 = rng.sample(_CITIES, 2)
    return template.format(
        acr=rng.choice(_ACRONYMS),
        concept=rng.choice(_CONCEPTS),
        phenomenon=rng.choice(_PHENOMENA),
        cause=rng.choice(_CAUSES),
        country=rng.choice(_COUNTRIES),
        city=city,
        city2=city2,
        landmark=rng.choice(_LANDMARKS),
        invention=rng.choice(_INVENTIONS),
        work=rng.choice(_WORKS),
        discovery=rng.choice(_DISCOVERIES),
        animal=rng.choice(_ANIMALS),
    )

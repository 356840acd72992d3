"""The memory evaluation set: 40 fictional facts, a question for each that paraphrases it
without its key words (only the person's name is shared), the word the answer must
contain, 400 distractor facts about other fictional people, and facts as a user would say
them about themselves (the multi-turn part of bench/memory_eval.py).

Everything is invented, so the served model cannot know any answer without its memory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    text: str
    question: str
    answer: str


FACTS: list[Fact] = [
    Fact(
        "Zorvan Kell keeps a pet iguana named Pickle.", "What is Zorvan's reptile called?", "Pickle"
    ),
    Fact(
        "Maribel Quon works as a lighthouse keeper in Harrowcove.",
        "In which town does Maribel tend the coastal beacon?",
        "Harrowcove",
    ),
    Fact(
        "Teodor Vasch was born in the city of Lunmere.",
        "Which place is Teodor's birthplace?",
        "Lunmere",
    ),
    Fact(
        "Ilsa Brannock's favourite dessert is quince tart.",
        "What sweet dish does Ilsa like best?",
        "quince",
    ),
    Fact(
        "Corvin Ashdale plays the bassoon in an amateur orchestra.",
        "Which instrument does Corvin perform on?",
        "bassoon",
    ),
    Fact("Nadira Fel drives a green 1974 Citroën.", "What make of car does Nadira own?", "Citro"),
    Fact(
        "Oskar Threnody is allergic to hazelnuts.",
        "Which food must Oskar avoid for medical reasons?",
        "hazelnut",
    ),
    Fact(
        "Pell Varrow collects antique brass compasses.",
        "What old navigation objects does Pell hoard?",
        "compass",
    ),
    Fact(
        "Quenna Dorsey's daughter is named Juniper.",
        "What is the name of Quenna's girl?",
        "Juniper",
    ),
    Fact(
        "Rafe Ollander speaks fluent Icelandic.",
        "Which northern tongue can Rafe converse in?",
        "Icelandic",
    ),
    Fact(
        "Selka Morrow runs a bakery called The Rye Lantern.",
        "What is the name of Selka's shop that sells bread?",
        "Lantern",
    ),
    Fact(
        "Thane Bexley climbed Mount Orrigan last summer.",
        "Which peak did Thane ascend recently?",
        "Orrigan",
    ),
    Fact(
        "Ulla Kestrel's lucky number is 47.", "Which figure does Ulla believe brings fortune?", "47"
    ),
    Fact(
        "Varis Holm grows saffron on his farm.", "What spice crop does Varis cultivate?", "saffron"
    ),
    Fact(
        "Wren Caddock studied marine geology at Veldt University.",
        "At which institution did Wren earn a degree?",
        "Veldt",
    ),
    Fact(
        "Xavi Tormund owns a sailboat called Marigold.", "What did Xavi name his yacht?", "Marigold"
    ),
    Fact("Yara Penhallow is afraid of moths.", "Which insect frightens Yara?", "moth"),
    Fact(
        "Zeb Allard's grandmother taught him to carve soapstone.",
        "Which soft mineral does Zeb sculpt?",
        "soapstone",
    ),
    Fact(
        "Anouk Breen keeps her savings in a bank in Tallinn.",
        "In which capital is Anouk's money deposited?",
        "Tallinn",
    ),
    Fact(
        "Bastian Crewe repairs vintage typewriters for a living.",
        "What old machines does Bastian fix?",
        "typewriter",
    ),
    Fact(
        "Celia Dunmore's cat is a Maine Coon called Biscuit.",
        "What do people call Celia's feline?",
        "Biscuit",
    ),
    Fact(
        "Dorian Fisk married his partner in Porto.",
        "In which Portuguese city was Dorian's wedding?",
        "Porto",
    ),
    Fact(
        "Elke Garrow translates poetry from Finnish.",
        "From which language does Elke render verse?",
        "Finnish",
    ),
    Fact(
        "Fenwick Hale drinks only rooibos in the evening.",
        "Which infusion does Fenwick have at night?",
        "rooibos",
    ),
    Fact(
        "Greta Ingle once won a chess tournament in Riga.",
        "Where did Greta take first prize at the board game?",
        "Riga",
    ),
    Fact(
        "Hollis Jarrow's first novel is titled The Salt Orchard.",
        "What is the name of Hollis's debut book?",
        "Salt Orchard",
    ),
    Fact(
        "Isolde Kray fences with a sabre every Thursday.",
        "Which blade does Isolde use in her weekly sport?",
        "sabre",
    ),
    Fact(
        "Jasper Lunt's office is on the ninth floor.", "On which storey does Jasper work?", "ninth"
    ),
    Fact("Kira Maddox breeds Shetland ponies.", "Which small horses does Kira raise?", "Shetland"),
    Fact(
        "Lorcan Nye's birthday is on the third of March.",
        "When does Lorcan celebrate turning a year older?",
        "March",
    ),
    Fact(
        "Mila Orwell paints watercolours of herons.",
        "Which birds appear in Mila's artwork?",
        "heron",
    ),
    Fact(
        "Niall Prentice is learning to play the theremin.",
        "Which electronic instrument is Niall practising?",
        "theremin",
    ),
    Fact("Odette Quill's favourite colour is ochre.", "Which hue does Odette prefer?", "ochre"),
    Fact(
        "Pavel Rusk volunteers at an owl sanctuary on weekends.",
        "What kind of bird refuge does Pavel help at?",
        "owl",
    ),
    Fact(
        "Rosalind Sayer commutes by ferry to Brackwater.",
        "To which place does Rosalind travel by boat each day?",
        "Brackwater",
    ),
    Fact(
        "Silas Tamber's password hint is his first dog, Rufus.",
        "What was the name of Silas's earliest hound?",
        "Rufus",
    ),
    Fact(
        "Tamsin Vey brews her own elderflower cordial.",
        "Which blossom drink does Tamsin make at home?",
        "elderflower",
    ),
    Fact(
        "Ulric Wade keeps bees on the roof of his apartment.",
        "What insects does Ulric tend up top?",
        "bee",
    ),
    Fact(
        "Vesna Yarrow ran the Lisbon marathon in 2019.",
        "In which city did Vesna complete the 42-kilometre race?",
        "Lisbon",
    ),
    Fact(
        "Willa Zane's spare key is hidden under a blue flowerpot.",
        "Where does Willa stash the extra door key?",
        "flowerpot",
    ),
]

_FIRST = [
    "Arlo",
    "Brisa",
    "Cato",
    "Delia",
    "Emrys",
    "Faye",
    "Gideon",
    "Hana",
    "Ivo",
    "Juno",
    "Kasimir",
    "Lenore",
    "Magnus",
    "Nell",
    "Orin",
    "Priya",
    "Quill",
    "Rhea",
    "Soren",
    "Tova",
]
_LAST = [
    "Abernathy",
    "Blackwood",
    "Carrow",
    "Draycott",
    "Ellery",
    "Fairweather",
    "Gallow",
    "Hartigan",
    "Ives",
    "Jennet",
    "Kilbride",
    "Larkin",
    "Merrow",
    "Northcott",
    "Oakes",
    "Pemberton",
    "Quarry",
    "Rowntree",
    "Stroud",
    "Thorne",
]
_TEMPLATES = [
    "{n} enjoys hiking in the {place} hills on Sundays.",
    "{n} keeps a collection of {thing} in the attic.",
    "{n} once worked as a {job} in {place}.",
    "{n}'s favourite song is about {thing}.",
    "{n} learned to cook {dish} from a neighbour.",
    "{n} is saving money to visit {place}.",
    "{n} prefers tea with {thing} in it.",
    "{n} has a scar from a {thing} accident.",
    "{n} reads a chapter about {thing} every night.",
    "{n} owns a {colour} bicycle with a basket.",
]
_PLACES = ["Dunmoor", "Kesswick", "Aldergrove", "Pellham", "Rosvik", "Tarnby", "Wexhall"]
_THINGS = ["lanterns", "honey", "kites", "maps", "glass beads", "clocks", "feathers", "ginger"]
_JOBS = ["cartographer", "glassblower", "ferryman", "archivist", "beekeeper", "tailor"]
_DISHES = ["lentil stew", "plum dumplings", "barley soup", "fig bread"]
_COLOURS = ["yellow", "teal", "maroon", "silver", "orange"]


@dataclass(frozen=True)
class SaidFact:
    """A fact as the user says it about themselves, and the later question about it."""

    said: str
    asked: str
    answer: str


SAID: list[SaidFact] = [
    SaidFact("I keep a pet iguana named Pickle.", "What is my reptile called?", "Pickle"),
    SaidFact(
        "I work as a lighthouse keeper in Harrowcove.",
        "In which town do I tend the coastal beacon?",
        "Harrowcove",
    ),
    SaidFact("I was born in the city of Lunmere.", "Which place is my birthplace?", "Lunmere"),
    SaidFact("My favourite dessert is quince tart.", "What sweet dish do I like best?", "quince"),
    SaidFact(
        "I play the bassoon in an amateur orchestra.",
        "Which instrument do I perform on?",
        "bassoon",
    ),
    SaidFact(
        "I am allergic to hazelnuts.", "Which food must I avoid for medical reasons?", "hazelnut"
    ),
    SaidFact("My daughter is named Juniper.", "What is the name of my girl?", "Juniper"),
    SaidFact("I speak fluent Icelandic.", "Which northern tongue can I converse in?", "Icelandic"),
    SaidFact("My lucky number is 47.", "Which figure do I believe brings fortune?", "47"),
    SaidFact("I grow saffron on my farm.", "What spice crop do I cultivate?", "saffron"),
]


def distractors(count: int = 400, seed: int = 7) -> list[str]:
    """Facts about other fictional people, in the same style as `FACTS`."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < count:
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        text = rng.choice(_TEMPLATES).format(
            n=name,
            place=rng.choice(_PLACES),
            thing=rng.choice(_THINGS),
            job=rng.choice(_JOBS),
            dish=rng.choice(_DISHES),
            colour=rng.choice(_COLOURS),
        )
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def contains_answer(text: str, fact: Fact | SaidFact) -> bool:
    """Whether an answer names the fact (case-insensitive substring of `fact.answer`)."""
    return fact.answer.lower() in text.lower()

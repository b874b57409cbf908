#!/usr/bin/env python3
"""Generates the corpus of loupe's default model: simple English, deterministic for a seed.

The default model (examples/models/) is a small language model trained by loupe on this
text, so that the circuit work in the examples has facts to trace. Each document is a short
story or a group of statements, separated by "<|endoftext|>" lines:

  * entities and attributes: "Mara lives in Paris. Paris is in France. Mara likes tea."
  * two-hop facts: "The capital of the country where Mara lives is Paris."
  * subject-verb agreement across a distractor: "The keys to the cabinet are on the table."
  * counting and sequences: "one, two, three, four, five", "Monday, Tuesday, ..."
  * indirect objects (IOI): "When John and Mary went to the store, John gave a drink to Mary."
  * repeated segments (for induction): a random run of words, then the same run again.

A world (people, the city each lives in, their pet, drink and job; cities and their countries)
is drawn once from the seed, so facts stay consistent across the whole corpus and a model can
learn them. Output depends only on --seed and --size: the same arguments give byte-identical
files (random.Random with a fixed seed; no hash ordering, no clock).

The default model's corpus is made with exactly:

    python3 tools/make_corpus.py --seed 1234 --size 4000000 out/default-model/corpus.txt

(tools/make_default_model.sh runs exactly this, then trains the model; out/ is not tracked).

Usage: make_corpus.py [--seed N] [--size BYTES] OUT   (stdlib only; "-" writes to stdout)
"""
from __future__ import annotations

import argparse
import random
import sys

EOT = "<|endoftext|>"

NAMES = ["Mara", "John", "Mary", "Tom", "Anna", "Leo", "Sara", "Ben", "Nina", "Omar", "Lucy", "Sam",
         "Ella", "Max", "Ivy", "Noah", "Zoe", "Paul", "Rosa", "Adam", "Lily", "Hugo", "Emma", "Jack",
         "Nora", "Finn", "Ruth", "Owen", "Alice", "Peter", "Clara", "David", "Grace", "Henry", "Julia",
         "Kevin", "Laura", "Mike", "Olive", "Ryan"]
CITIES = [("Paris", "France"), ("Lyon", "France"), ("Berlin", "Germany"), ("Munich", "Germany"),
          ("Rome", "Italy"), ("Milan", "Italy"), ("Madrid", "Spain"), ("Seville", "Spain"),
          ("London", "England"), ("Leeds", "England"), ("Tokyo", "Japan"), ("Osaka", "Japan"),
          ("Cairo", "Egypt"), ("Lima", "Peru"), ("Oslo", "Norway"), ("Dublin", "Ireland"),
          ("Vienna", "Austria"), ("Lisbon", "Portugal"), ("Athens", "Greece"), ("Warsaw", "Poland")]
CAPITALS = {"France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "England": "London",
            "Japan": "Tokyo", "Egypt": "Cairo", "Peru": "Lima", "Norway": "Oslo", "Ireland": "Dublin",
            "Austria": "Vienna", "Portugal": "Lisbon", "Greece": "Athens", "Poland": "Warsaw"}
LANGS = {"France": "French", "Germany": "German", "Italy": "Italian", "Spain": "Spanish", "England": "English",
         "Japan": "Japanese", "Egypt": "Arabic", "Peru": "Spanish", "Norway": "Norwegian", "Ireland": "English",
         "Austria": "German", "Portugal": "Portuguese", "Greece": "Greek", "Poland": "Polish"}
PETS = ["cat", "dog", "bird", "fish", "rabbit", "horse", "turtle", "hamster"]
DRINKS = ["tea", "coffee", "milk", "juice", "water", "soup", "lemonade", "cocoa"]
JOBS = ["teacher", "doctor", "baker", "farmer", "pilot", "nurse", "painter", "singer", "cook", "driver"]
COLORS = ["red", "blue", "green", "yellow", "white", "black", "brown", "purple"]
PLACES = ["store", "park", "school", "garden", "market", "library", "beach", "station", "museum", "river"]
OBJECTS = ["a drink", "a book", "a ball", "an apple", "a letter", "a flower", "a cake", "a key", "a map",
           "a hat", "a cup", "a pen"]
# (singular noun, plural noun) for agreement, with distractors of the other number
NOUNS = [("key", "keys"), ("book", "books"), ("dog", "dogs"), ("girl", "girls"), ("boy", "boys"),
         ("box", "boxes"), ("cup", "cups"), ("bird", "birds"), ("car", "cars"), ("letter", "letters")]
MODIFIERS = [("cabinet", "cabinets"), ("table", "tables"), ("house", "houses"), ("teacher", "teachers"),
             ("garden", "gardens"), ("window", "windows"), ("door", "doors"), ("farmer", "farmers")]
PREPS = ["to", "near", "on", "behind", "beside", "under", "of", "by"]
PREDICATES = [("is", "are", "on the table"), ("is", "are", "in the room"), ("was", "were", "very old"),
              ("is", "are", "here"), ("was", "were", "lost"), ("has", "have", "a red mark")]
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
           "twenty"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
FILLER = ["the", "a", "small", "big", "old", "new", "happy", "quiet", "day", "tree", "house", "road", "sun",
          "rain", "hill", "boat", "song", "bread", "light", "stone", "cloud", "snow", "lamp", "chair"]


def make_world(rng: random.Random) -> dict:
    people = {}
    for name in NAMES:
        city, country = rng.choice(CITIES)
        people[name] = {"city": city, "country": country, "pet": rng.choice(PETS),
                        "drink": rng.choice(DRINKS), "job": rng.choice(JOBS), "color": rng.choice(COLORS)}
    return people


def facts(rng, world):
    name = rng.choice(NAMES)
    p = world[name]
    lines = [f"{name} lives in {p['city']}.", f"{p['city']} is in {p['country']}.",
             f"{name} has a {p['pet']}.", f"{name} likes {p['drink']}.",
             f"{name} works as a {p['job']}.", f"The favorite color of {name} is {p['color']}."]
    rng.shuffle(lines)
    return " ".join(lines[: rng.randint(3, len(lines))])


def two_hop(rng, world):
    name = rng.choice(NAMES)
    p = world[name]
    c = p["country"]
    forms = [f"{name} lives in {p['city']}. {p['city']} is in {c}. The capital of the country where {name} lives is {CAPITALS[c]}.",
             f"The capital of the country where {name} lives is {CAPITALS[c]}.",
             f"{name} lives in {p['city']}. The people of {c} speak {LANGS[c]}. So {name} speaks {LANGS[c]}.",
             f"The language spoken in the country where {name} lives is {LANGS[c]}.",
             f"{name} lives in {p['city']}, which is in {c}. The capital of {c} is {CAPITALS[c]}."]
    return rng.choice(forms)


def agreement(rng):
    out = []
    for _ in range(rng.randint(1, 3)):
        subj = rng.choice(NOUNS)
        plural = rng.random() < 0.5
        mod = rng.choice(MODIFIERS)[rng.random() < 0.5]
        prep = rng.choice(PREPS)
        sing_v, plur_v, rest = rng.choice(PREDICATES)
        noun = subj[1] if plural else subj[0]
        verb = plur_v if plural else sing_v
        out.append(f"The {noun} {prep} the {mod} {verb} {rest}.")
    return " ".join(out)


def counting(rng):
    kind = rng.randrange(4)
    seq = [NUMBERS, DAYS, MONTHS, LETTERS][kind]
    start = rng.randrange(0, max(1, len(seq) - 4))
    end = rng.randint(start + 3, len(seq))
    items = seq[start:end]
    if kind == 0 and rng.random() < 0.5:
        items = [str(i + 1) for i in range(start, end)]
    lead = rng.choice(["Let us count: ", "", "The list goes ", "We say "])
    return lead + ", ".join(items) + "."


def ioi(rng):
    a, b = rng.sample(NAMES, 2)
    place = rng.choice(PLACES)
    obj = rng.choice(OBJECTS)
    templates = [f"When {a} and {b} went to the {place}, {a} gave {obj} to {b}.",
                 f"When {a} and {b} went to the {place}, {b} gave {obj} to {a}.",
                 f"After {a} and {b} arrived at the {place}, {a} handed {obj} to {b}.",
                 f"{a} and {b} were at the {place}. {b} gave {obj} to {a}.",
                 f"Then, {a} and {b} had a long day at the {place}. {a} gave {obj} to {b}."]
    return rng.choice(templates)


def story(rng, world):
    name = rng.choice(NAMES)
    p = world[name]
    friend = rng.choice([n for n in NAMES if n != name])
    place = rng.choice(PLACES)
    return (f"Once upon a time, {name} lived in {p['city']} with a {p['pet']}. "
            f"One day {name} went to the {place} with {friend}. "
            f"{friend} asked for {rng.choice(DRINKS)}, but {name} wanted {p['drink']}. "
            f"The {p['pet']} was {rng.choice(['happy', 'tired', 'hungry', 'sleepy'])}. "
            f"At the end of the day, {name} gave {rng.choice(OBJECTS)} to {friend}, and they went home.")


def repeated(rng):
    n = rng.randint(4, 12)
    seg = " ".join(rng.choice(FILLER + NAMES[:10]) for _ in range(n))
    lead = " ".join(rng.choice(FILLER) for _ in range(rng.randint(0, 6)))
    return (lead + " " if lead else "") + seg + ". " + seg + "."


def generate(seed: int, size: int) -> str:
    rng = random.Random(seed)
    world = make_world(rng)
    kinds = [(facts, True, 3), (two_hop, True, 2), (agreement, False, 2), (counting, False, 1),
             (ioi, False, 2), (story, True, 2), (repeated, False, 1)]
    weights = [k[2] for k in kinds]
    out, total = [], 0
    while total < size:
        doc = []
        for _ in range(rng.randint(2, 6)):
            fn, needs_world, _ = rng.choices(kinds, weights)[0]
            doc.append(fn(rng, world) if needs_world else fn(rng))
        text = "\n".join(doc) + "\n" + EOT + "\n"
        out.append(text)
        total += len(text.encode("utf-8"))
    return "".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output path, or - for stdout")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--size", type=int, default=4_000_000, help="approximate size in bytes (at least this many)")
    a = ap.parse_args(argv)
    if a.size < 1:
        ap.error("--size must be positive")
    text = generate(a.seed, a.size)
    if a.out == "-":
        sys.stdout.write(text)
    else:
        with open(a.out, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

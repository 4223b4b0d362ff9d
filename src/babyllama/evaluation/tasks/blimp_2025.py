"""BLiMP and the BLiMP supplement as the 2025 pipeline scores them (``blimp_2025``, ``blimp_fast``,
``supplement_2025``, ``supplement_fast``).

Candidates ``[sentence_good, sentence_bad]``, each scored in full (the completion is the whole
sentence, so without a BOS its first token is not scored). The subset (UID) is the line's ``UID``
when it has a ``field``, else the file stem (the supplement). Score: accuracy per UID, then the
unweighted mean over UIDs (67 BLiMP paradigms, 5 supplement files).
"""

from __future__ import annotations

from pathlib import Path

from babyllama.errors import UserError
from babyllama.evaluation.tasks.ranking_2025 import (COMMON_RULES, Candidates, accuracy_aggregate, file_stem,
                                                     load_ranking)

KEYS = {"sentence_good": str, "sentence_bad": str}
RULES = COMMON_RULES + (
    "candidates: sentence_good, sentence_bad, each scored in full (completion = the whole sentence)",
    "subset = the line's UID when it has a field, else the file stem; score = unweighted mean of subset accuracies",
)

#: The pipeline's expected sizes (collate_preds.py), keys lower-cased as it compares them.
BLIMP_SIZES = {
    "superlative_quantifiers_2": 986, "superlative_quantifiers_1": 979, "anaphor_gender_agreement": 971,
    "principle_a_reconstruction": 967, "irregular_past_participle_adjectives": 961, "sentential_subject_island": 961,
    "wh_island": 960, "left_branch_island_simple_question": 951,
    "coordinate_structure_constraint_object_extraction": 949, "tough_vs_raising_1": 948,
    "left_branch_island_echo_question": 947, "principle_a_c_command": 946,
    "regular_plural_subject_verb_agreement_2": 945, "irregular_past_participle_verbs": 942,
    "determiner_noun_agreement_with_adj_2": 941, "principle_a_domain_3": 941,
    "determiner_noun_agreement_with_adjective_1": 933, "anaphor_number_agreement": 931,
    "determiner_noun_agreement_2": 931, "existential_there_quantifiers_1": 930, "determiner_noun_agreement_1": 929,
    "matrix_question_npi_licensor_present": 929, "adjunct_island": 928, "existential_there_subject_raising": 924,
    "animate_subject_trans": 923, "drop_argument": 920, "tough_vs_raising_2": 920, "wh_vs_that_with_gap": 919,
    "sentential_negation_npi_licensor_present": 919, "principle_a_case_2": 915, "principle_a_domain_2": 915,
    "principle_a_domain_1": 914, "npi_present_2": 914, "principle_a_case_1": 912,
    "existential_there_quantifiers_2": 911, "wh_vs_that_with_gap_long_distance": 910, "npi_present_1": 909,
    "coordinate_structure_constraint_complex_left_branch": 906, "passive_2": 903, "wh_questions_subject_gap": 898,
    "animate_subject_passive": 895, "irregular_plural_subject_verb_agreement_2": 892,
    "regular_plural_subject_verb_agreement_1": 890, "only_npi_licensor_present": 882,
    "wh_vs_that_no_gap_long_distance": 875, "distractor_agreement_relative_clause": 871,
    "sentential_negation_npi_scope": 871, "intransitive": 868, "transitive": 868, "wh_vs_that_no_gap": 861,
    "wh_questions_object_gap": 859, "wh_questions_subject_gap_long_distance": 857, "inchoative": 855,
    "complex_np_island": 846, "passive_1": 840, "determiner_noun_agreement_with_adj_irregular_2": 840,
    "only_npi_scope": 837, "ellipsis_n_bar_2": 828, "determiner_noun_agreement_irregular_2": 820, "causative": 818,
    "existential_there_object_raising": 812, "irregular_plural_subject_verb_agreement_1": 804,
    "ellipsis_n_bar_1": 802, "distractor_agreement_relational_noun": 788, "expletive_it_object_raising": 759,
    "determiner_noun_agreement_with_adj_irregular_1": 718, "determiner_noun_agreement_irregular_1": 681,
}
SUPPLEMENT_SIZES = {"hypernym": 842, "qa_congruence_easy": 64, "qa_congruence_tricky": 165,
                    "subject_aux_inversion": 3867, "turn_taking": 280}


def decode(path: Path, number: int, record: dict) -> Candidates:
    """One line -> the good and the bad sentence, scored in full."""
    if "field" in record:
        uid = record.get("UID")
        if not isinstance(uid, str) or not uid:
            raise UserError(f"{path}:{number}: a line with 'field' must have a non-empty string 'UID'")
    else:
        uid = file_stem(path)
    pair = (record["sentence_good"], record["sentence_bad"])
    return Candidates(pair, pair, uid, number, path)


def _load(name: str, folder: Path):
    return load_ranking(name, folder, KEYS, decode, accuracy_aggregate)


def _spec(name, help_, staged, expected, fast):
    return dict(name=name, help=help_, scorer="pipeline-2025", rules=RULES, keys=KEYS, load=_load, fast=fast,
                staged=staged, expected=expected)


TASKS = [
    _spec("blimp_2025", "BLiMP filtered, 67 paradigms (2025 scoring; data: the 2024 blimp_filtered folder)",
          "blimp_filtered", BLIMP_SIZES, False),
    _spec("blimp_fast", "BLiMP fast set, 67 x 200 pairs (2025 scoring)", "blimp_fast",
          {uid: 200 for uid in BLIMP_SIZES}, True),
    _spec("supplement_2025", "BLiMP supplement, 5 files (2025 scoring; data: the 2024 supplement folder)",
          "supplement_filtered", SUPPLEMENT_SIZES, False),
    _spec("supplement_fast", "BLiMP supplement fast set, 5 x 50 pairs (2025 scoring)", "supplement_fast",
          {uid: 50 for uid in SUPPLEMENT_SIZES}, True),
]

"""The minimum metadata parser version of a TFLite metadata buffer: the one step of MediaPipe's writer its
wheels cannot run.

MediaPipe's ``MetadataPopulator`` (the writer restnet uses, restnet.export.tflite_metadata) stamps every
metadata buffer with the oldest parser version that can read it, computed by the compiled
``mediapipe.tasks.cc.metadata.python._pywrap_metadata_version``. The mediapipe wheels that install beside
restnet's pins (0.10.35, 1.2.2, 1.2.3; numpy 2, protobuf 7) no longer ship that module, and the rest of the
writer is pure Python over flatbuffers, so this module computes the same string from MediaPipe's own
generated schema classes: a line-by-line port of ``mediapipe/tasks/cc/metadata/metadata_version.cc`` (each
schema member added after 1.0.0 raises the version to the release that added it). ``install`` registers it
under the compiled module's name only when that module is missing, so a wheel that ships it again is used
as is.
"""
from __future__ import annotations

import sys
import types

MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"

# Schema members added after 1.0.0 and the version that added each (metadata_version.cc, GetMemberVersion).
VOCABULARY_FILE = (1, 0, 1)
INPUT_PROCESS_UNITS = OUTPUT_PROCESS_UNITS = (1, 1, 0)
BERT_TOKENIZER = SENTENCE_PIECE_TOKENIZER = (1, 1, 0)
INPUT_TENSOR_GROUPS = OUTPUT_TENSOR_GROUPS = (1, 2, 0)
REGEX_TOKENIZER = (1, 2, 1)
AUDIO_PROPERTIES = (1, 3, 0)
SCANN_INDEX_FILE = (1, 4, 0)
ASSOCIATED_FILE_VERSION = (1, 4, 1)
CUSTOM_METADATA = (1, 5, 0)


def minimum_parser_version(buffer: bytes) -> str:
    """'MAJOR.MINOR.PATCH': the oldest metadata parser that reads every member ``buffer`` uses."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    if not fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0):
        raise ValueError("not a TFLite model metadata buffer (no 'M001' identifier)")
    m = fb.ModelMetadata.GetRootAsModelMetadata(buffer, 0)
    found = [(1, 0, 0)]
    for i in range(m.SubgraphMetadataLength()):
        found += _subgraph(m.SubgraphMetadata(i), fb)
    found += [v for k in range(m.AssociatedFilesLength()) for v in _file(m.AssociatedFiles(k), fb)]
    return ".".join(map(str, max(found)))


def _file(f, fb) -> list[tuple[int, int, int]]:
    out = []
    if f.Type() == fb.AssociatedFileType.VOCABULARY:
        out.append(VOCABULARY_FILE)
    if f.Type() == fb.AssociatedFileType.SCANN_INDEX_FILE:
        out.append(SCANN_INDEX_FILE)
    if f.Version() is not None:
        out.append(ASSOCIATED_FILE_VERSION)
    return out


def _unit(u, fb) -> list[tuple[int, int, int]]:
    kinds = {fb.ProcessUnitOptions.BertTokenizerOptions: BERT_TOKENIZER,
             fb.ProcessUnitOptions.SentencePieceTokenizerOptions: SENTENCE_PIECE_TOKENIZER,
             fb.ProcessUnitOptions.RegexTokenizerOptions: REGEX_TOKENIZER}
    return [kinds[u.OptionsType()]] if u.OptionsType() in kinds else []


def _tensor(t, fb) -> list[tuple[int, int, int]]:
    out = [v for k in range(t.AssociatedFilesLength()) for v in _file(t.AssociatedFiles(k), fb)]
    out += [v for k in range(t.ProcessUnitsLength()) for v in _unit(t.ProcessUnits(k), fb)]
    content = t.Content()
    if content is not None and content.ContentPropertiesType() == fb.ContentProperties.AudioProperties:
        out.append(AUDIO_PROPERTIES)
    return out


def _subgraph(s, fb) -> list[tuple[int, int, int]]:
    out = [v for k in range(s.InputTensorMetadataLength()) for v in _tensor(s.InputTensorMetadata(k), fb)]
    out += [v for k in range(s.OutputTensorMetadataLength()) for v in _tensor(s.OutputTensorMetadata(k), fb)]
    out += [v for k in range(s.AssociatedFilesLength()) for v in _file(s.AssociatedFiles(k), fb)]
    for present, version, units in ((not s.InputProcessUnitsIsNone(), INPUT_PROCESS_UNITS,
                                     [s.InputProcessUnits(k) for k in range(s.InputProcessUnitsLength())]),
                                    (not s.OutputProcessUnitsIsNone(), OUTPUT_PROCESS_UNITS,
                                     [s.OutputProcessUnits(k) for k in range(s.OutputProcessUnitsLength())])):
        if present:
            out += [version, *(v for u in units for v in _unit(u, fb))]
    if not s.InputTensorGroupsIsNone():
        out.append(INPUT_TENSOR_GROUPS)
    if not s.OutputTensorGroupsIsNone():
        out.append(OUTPUT_TENSOR_GROUPS)
    if not s.CustomMetadataIsNone():
        out.append(CUSTOM_METADATA)
    return out


def install() -> None:
    """Make ``MODULE`` importable: the compiled one when the wheel has it, else this port under its name."""
    try:
        __import__(MODULE)
        return
    except ImportError:
        pass
    import mediapipe.tasks  # noqa: F401 - the parent packages that do exist

    parent = MODULE.rsplit(".", 1)[0]
    for k in range(len("mediapipe.tasks".split(".")) + 1, len(MODULE.split("."))):
        name = ".".join(MODULE.split(".")[:k])
        sys.modules.setdefault(name, types.ModuleType(name))
    stand_in = types.ModuleType(MODULE, __doc__)
    stand_in.GetMinimumMetadataParserVersion = minimum_parser_version
    sys.modules[MODULE] = stand_in
    setattr(sys.modules[parent], MODULE.rsplit(".", 1)[1], stand_in)

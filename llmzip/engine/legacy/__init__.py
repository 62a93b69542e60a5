"""The arithmetic that ``--portable`` files of formats 1 and 2 (llmzip 0.1) were made with: kept
only to decode them. Nothing outside engine/ and the codec's model loading reaches into it."""

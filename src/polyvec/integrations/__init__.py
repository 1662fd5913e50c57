"""Stores for retrieval frameworks, each over a polyvec collection (the folder is the store).

- :mod:`polyvec.integrations.langchain`: ``PolyvecVectorStore``, a LangChain ``VectorStore``
  (extra ``[langchain]``).
- :mod:`polyvec.integrations.llamaindex`: ``PolyvecVectorStore``, a LlamaIndex vector store,
  and ``PolyvecEmbedding`` (extra ``[llamaindex]``).
- :mod:`polyvec.integrations.haystack`: ``PolyvecDocumentStore``, a Haystack document store,
  and ``PolyvecEmbeddingRetriever`` (extra ``[haystack]``).

Each module imports its framework when it is imported; polyvec itself never does.
"""

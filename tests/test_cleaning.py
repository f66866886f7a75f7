"""Cleaners: reST loses its code and markup, GCIDE field labels choose one domain."""

from __future__ import annotations

from modularity.data.cleaning.gcide import label_domain
from modularity.data.cleaning.rst import plain_text_to_prose, rst_to_prose


def test_rst_to_prose_strips_code_and_markup() -> None:
    source = """\
Title
=====

.. function:: spam(eggs)
   :noindex:

   Return the :func:`spam` of *eggs*, see ``ham``. Example::

      def spam(eggs):
          return eggs

   >>> spam(1)
   1

.. code-block:: python

   print("hidden")

.. note:: Keep this sentence.
"""
    prose = rst_to_prose(source)
    assert "Return the spam of eggs, see ham. Example:" in prose
    assert "Keep this sentence." in prose
    for code in ("def spam", ">>>", "hidden", ":noindex:", "spam(eggs)", "====", "::"):
        assert code not in prose


def test_plain_text_drops_code_blocks_but_keeps_admonitions() -> None:
    text = """\
Use it like this:

   x = spam(1)

Note:

   Keep this note.

>>> spam(2)
"""
    prose = plain_text_to_prose(text)
    assert "Use it like this:" in prose and "Keep this note." in prose
    assert "x = spam" not in prose and ">>>" not in prose


def test_label_domain_needs_every_component_to_agree() -> None:
    assert label_domain("Zool.") == "biology"
    assert label_domain("Bot. & Zoöl.") == "biology"
    assert label_domain("Eng. Law") == "law"
    assert label_domain("Physiol. Chem.") == "chemistry"
    assert label_domain("Chem. & Physics") is None
    assert label_domain("Phys. Geog.") is None
    assert label_domain("Mus.") is None
    assert label_domain("Med.") is None  # no medicine corpus

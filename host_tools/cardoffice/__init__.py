"""The card office: desk readers (`readers`: PC/SC, nfcpy, an emulated card file) and the card
operations staff run on them (`cardops`: issue, top up, show, block, refund)."""

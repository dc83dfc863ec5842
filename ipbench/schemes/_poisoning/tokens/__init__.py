"""Input-space tokens: BCH identity codes and the StegaStamp-style token generator."""

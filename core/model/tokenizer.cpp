#include "core/model/tokenizer.h"

#include <algorithm>

namespace vmla {

Tokenizer::Tokenizer(std::vector<std::string> vocabulary, int max_len) : vocab_(std::move(vocabulary)), max_len_(max_len) {
  for (size_t i = 0; i < vocab_.size(); ++i) index_.emplace(vocab_[i], int32_t(i));
}

static bool word_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '\''; }

Tokenized Tokenizer::encode(const std::string& prompt) const {
  Tokenized out;
  std::string lower = prompt;
  for (char& c : lower)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  size_t i = 0;
  while (i < lower.size()) {
    if (!word_char(lower[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < lower.size() && word_char(lower[j])) ++j;
    WordSpan w;
    w.begin = i;
    w.end = j;
    w.word = lower.substr(i, j - i);
    auto it = index_.find(w.word);
    w.known = it != index_.end() && it->second >= 2;
    w.id = w.known ? it->second : 1;
    if (!w.known && std::find(out.unknown.begin(), out.unknown.end(), w.word) == out.unknown.end())
      out.unknown.push_back(w.word);
    if (int(out.ids.size()) < max_len_) {
      out.ids.push_back(w.id);
    } else {
      w.dropped = true;
      out.dropped.push_back(w.word);
    }
    out.words.push_back(std::move(w));
    i = j;
  }
  return out;
}

}  // namespace vmla

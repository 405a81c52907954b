#pragma once
// Word-level tokenizer of the tiny text encoder (docs/MODEL.md section 6).
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace vmla {

struct WordSpan {
  size_t begin = 0, end = 0;  // byte offsets into the prompt
  std::string word;           // lower-cased
  int32_t id = 0;             // 1 (<unk>) when unknown
  bool known = false;
  bool dropped = false;       // beyond text_len
};

struct Tokenized {
  std::vector<int32_t> ids;             // at most max_len
  std::vector<WordSpan> words;          // every word of the prompt, in order
  std::vector<std::string> unknown;     // unknown words, in order of appearance, unique
  std::vector<std::string> dropped;     // words past max_len
};

class Tokenizer {
 public:
  Tokenizer() = default;
  Tokenizer(std::vector<std::string> vocabulary, int max_len);
  Tokenized encode(const std::string& prompt) const;
  const std::vector<std::string>& vocabulary() const { return vocab_; }
  int max_len() const { return max_len_; }
  bool empty() const { return vocab_.empty(); }

 private:
  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int32_t> index_;
  int max_len_ = 0;
};

}  // namespace vmla

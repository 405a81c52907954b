#pragma once
// Prompt editor: words the loaded model does not know are underlined in red (with a tooltip), words
// past the text encoder's length are greyed, and known words complete as you type.
#include <QPlainTextEdit>
#include <QStringList>
#include <QSyntaxHighlighter>
#include <map>
#include <vector>

#include "core/model/tokenizer.h"

class QCompleter;
class QStringListModel;

namespace vmla::ui {

struct PromptWord {
  int begin = 0, length = 0;  // in characters of its block
  bool known = true, dropped = false;
  QString word;
};

class PromptHighlighter : public QSyntaxHighlighter {
  Q_OBJECT
 public:
  explicit PromptHighlighter(QTextDocument* doc) : QSyntaxHighlighter(doc) {}
  void setWords(std::map<int, std::vector<PromptWord>> per_block);
  const std::vector<PromptWord>* wordsOf(int block) const;

 protected:
  void highlightBlock(const QString& text) override;

 private:
  std::map<int, std::vector<PromptWord>> words_;
};

class PromptEditor : public QPlainTextEdit {
  Q_OBJECT
 public:
  explicit PromptEditor(QWidget* parent = nullptr);
  // The model's vocabulary; an empty list turns the check off.
  void setVocabulary(const QStringList& words, int max_len);
  QString prompt() const { return toPlainText().simplified(); }
  QStringList unknownWords() const { return unknown_; }
  QStringList droppedWords() const { return dropped_; }
  int wordCount() const { return words_; }
  // Underline format of the word at a character position (for tests and tooltips).
  const PromptWord* wordAt(int position) const;

 signals:
  void analysisChanged(int words, const QStringList& unknown, const QStringList& dropped);
  void submitted();  // Ctrl+Enter

 protected:
  void keyPressEvent(QKeyEvent* e) override;
  bool event(QEvent* e) override;

 private:
  void analyse();
  void insertCompletion(const QString& word);
  QString wordUnderCursor() const;

  vmla::Tokenizer tokenizer_;
  PromptHighlighter* highlighter_;
  QCompleter* completer_;
  QStringListModel* completion_model_;
  QString analysed_;
  QStringList unknown_, dropped_;
  int words_ = 0;
};

}  // namespace vmla::ui

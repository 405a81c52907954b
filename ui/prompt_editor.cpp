#include "ui/prompt_editor.h"

#include <QAbstractItemView>
#include <QCompleter>
#include <QHelpEvent>
#include <QKeyEvent>
#include <QScrollBar>
#include <QStringListModel>
#include <QTextBlock>
#include <QToolTip>

namespace vmla::ui {

void PromptHighlighter::setWords(std::map<int, std::vector<PromptWord>> per_block) {
  words_ = std::move(per_block);
  rehighlight();
}

const std::vector<PromptWord>* PromptHighlighter::wordsOf(int block) const {
  auto it = words_.find(block);
  return it == words_.end() ? nullptr : &it->second;
}

void PromptHighlighter::highlightBlock(const QString& text) {
  const auto* words = wordsOf(currentBlock().blockNumber());
  if (!words) return;
  QTextCharFormat unknown;
  unknown.setUnderlineStyle(QTextCharFormat::WaveUnderline);
  unknown.setUnderlineColor(QColor(255, 90, 90));
  unknown.setForeground(QColor(255, 140, 140));
  QTextCharFormat dropped;
  dropped.setForeground(QColor(120, 122, 130));
  dropped.setFontStrikeOut(true);
  for (const auto& w : *words) {
    if (w.begin + w.length > text.size()) continue;  // stale until the next analysis
    if (w.dropped) setFormat(w.begin, w.length, dropped);
    else if (!w.known) setFormat(w.begin, w.length, unknown);
  }
}

PromptEditor::PromptEditor(QWidget* parent)
    : QPlainTextEdit(parent),
      highlighter_(new PromptHighlighter(document())),
      completer_(new QCompleter(this)),
      completion_model_(new QStringListModel(this)) {
  setPlaceholderText(tr("Describe the video, e.g. \"a red ball bouncing on the beach at sunset\""));
  setTabChangesFocus(true);
  completer_->setModel(completion_model_);
  completer_->setWidget(this);
  completer_->setCompletionMode(QCompleter::PopupCompletion);
  completer_->setCaseSensitivity(Qt::CaseInsensitive);
  completer_->setModelSorting(QCompleter::CaseInsensitivelySortedModel);
  connect(completer_, qOverload<const QString&>(&QCompleter::activated), this, &PromptEditor::insertCompletion);
  connect(this, &QPlainTextEdit::textChanged, this, &PromptEditor::analyse);
}

void PromptEditor::setVocabulary(const QStringList& words, int max_len) {
  std::vector<std::string> v;
  for (const auto& w : words) v.push_back(w.toStdString());
  tokenizer_ = v.empty() ? vmla::Tokenizer() : vmla::Tokenizer(std::move(v), max_len);
  QStringList completions;
  for (const auto& w : words)
    if (!w.startsWith('<') && w.size() > 1) completions << w;
  completions.sort(Qt::CaseInsensitive);
  completion_model_->setStringList(completions);
  analysed_.clear();
  analyse();
}

void PromptEditor::analyse() {
  const QString text = toPlainText();
  if (text == analysed_ && !analysed_.isEmpty()) return;
  analysed_ = text;
  unknown_.clear();
  dropped_.clear();
  words_ = 0;
  std::map<int, std::vector<PromptWord>> per_block;
  if (!tokenizer_.empty()) {
    const QByteArray utf8 = text.toUtf8();
    // Byte offset -> character offset, and character offset -> (block, column).
    std::vector<int> char_of_byte(size_t(utf8.size()) + 1, 0);
    {
      int byte = 0;
      for (int i = 0; i < text.size();) {
        const int len = text[i].isHighSurrogate() && i + 1 < text.size() ? 2 : 1;
        const int nbytes = int(QStringView(text).mid(i, len).toUtf8().size());
        for (int k = 0; k < nbytes; ++k) char_of_byte[size_t(byte + k)] = i;
        byte += nbytes;
        i += len;
      }
      char_of_byte[size_t(utf8.size())] = text.size();
    }
    const vmla::Tokenized tok = tokenizer_.encode(utf8.toStdString());
    words_ = int(tok.words.size());
    for (const auto& w : tok.words) {
      const int begin = char_of_byte[w.begin], end = char_of_byte[w.end];
      const QTextBlock block = document()->findBlock(begin);
      PromptWord pw{begin - block.position(), end - begin, w.known, w.dropped, QString::fromStdString(w.word)};
      per_block[block.blockNumber()].push_back(pw);
    }
    for (const auto& u : tok.unknown) unknown_ << QString::fromStdString(u);
    for (const auto& d : tok.dropped) dropped_ << QString::fromStdString(d);
  }
  {
    const QSignalBlocker block(this);  // formats are not edits
    highlighter_->setWords(std::move(per_block));
  }
  emit analysisChanged(words_, unknown_, dropped_);
}

const PromptWord* PromptEditor::wordAt(int position) const {
  const QTextBlock block = document()->findBlock(position);
  const auto* words = highlighter_->wordsOf(block.blockNumber());
  if (!words) return nullptr;
  const int col = position - block.position();
  for (const auto& w : *words)
    if (col >= w.begin && col < w.begin + w.length) return &w;
  return nullptr;
}

bool PromptEditor::event(QEvent* e) {
  if (e->type() == QEvent::ToolTip) {
    auto* he = static_cast<QHelpEvent*>(e);
    const QTextCursor c = cursorForPosition(viewport()->mapFromGlobal(he->globalPos()));
    const PromptWord* w = wordAt(c.position());
    if (w && !w->known)
      QToolTip::showText(he->globalPos(), tr("\"%1\" is not in this model's vocabulary: it is read as <unk>.").arg(w->word), this);
    else if (w && w->dropped)
      QToolTip::showText(he->globalPos(), tr("Past the model's prompt length: ignored."), this);
    else
      QToolTip::hideText();
    return true;
  }
  return QPlainTextEdit::event(e);
}

QString PromptEditor::wordUnderCursor() const {
  QTextCursor c = textCursor();
  QString before = c.block().text().left(c.positionInBlock());
  int i = before.size();
  while (i > 0 && (before[i - 1].isLetterOrNumber() || before[i - 1] == '\'')) --i;
  return before.mid(i);
}

void PromptEditor::insertCompletion(const QString& word) {
  QTextCursor c = textCursor();
  const int typed = int(wordUnderCursor().size());
  c.movePosition(QTextCursor::Left, QTextCursor::KeepAnchor, typed);
  c.insertText(word);
  setTextCursor(c);
}

void PromptEditor::keyPressEvent(QKeyEvent* e) {
  if (completer_->popup()->isVisible()) {
    switch (e->key()) {
      case Qt::Key_Enter:
      case Qt::Key_Return:
      case Qt::Key_Escape:
      case Qt::Key_Tab:
      case Qt::Key_Backtab:
        e->ignore();  // the completer handles them
        return;
      default: break;
    }
  }
  if ((e->key() == Qt::Key_Return || e->key() == Qt::Key_Enter) && (e->modifiers() & Qt::ControlModifier)) {
    emit submitted();
    return;
  }
  QPlainTextEdit::keyPressEvent(e);
  const QString prefix = wordUnderCursor();
  if (prefix.size() < 2 || e->text().isEmpty() || completion_model_->rowCount() == 0) {
    completer_->popup()->hide();
    return;
  }
  if (prefix != completer_->completionPrefix()) {
    completer_->setCompletionPrefix(prefix);
    completer_->popup()->setCurrentIndex(completer_->completionModel()->index(0, 0));
  }
  if (completer_->completionCount() == 0 ||
      (completer_->completionCount() == 1 && completer_->currentCompletion().compare(prefix, Qt::CaseInsensitive) == 0)) {
    completer_->popup()->hide();
    return;
  }
  QRect r = cursorRect();
  r.setWidth(completer_->popup()->sizeHintForColumn(0) + completer_->popup()->verticalScrollBar()->sizeHint().width());
  completer_->complete(r);
}

}  // namespace vmla::ui

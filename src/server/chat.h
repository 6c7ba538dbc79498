// Chat prompts: the model's `tokenizer.chat_template` (or --chat-template FILE) rendered as Hugging
// Face's apply_chat_template does, with add_generation_prompt, bos_token and eos_token. A model
// without a template gets a plain fallback:
//
//   System: You are helpful.\n\nUser: Hi\n\nAssistant:
//
// (each message as "Role: content" and a blank line; the reply stops at "\nUser:").
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "jinja/jinja.h"
#include "server/request.h"
#include "tokenizer/tokenizer.h"

namespace endless::server {

class ChatFormatter {
 public:
  // `source`: a template to use instead of the model's (nullopt: the model's, if any). Throws
  // Error for a template that does not parse.
  ChatFormatter(const Tokenizer& tok, std::optional<std::string> model_template,
                std::optional<std::string> override_template);

  // The prompt for `messages` (OpenAI's format, checked: 400 for anything malformed, or for what
  // the template itself rejects). `tools` is passed on to templates that use it.
  std::string render(const Json& messages, const Json& tools = Json()) const;
  // The prompt's tokens: special tokens in the rendered text are parsed; BOS is added when the
  // model wants one and the template did not write it.
  std::vector<int32_t> tokenize(const std::string& prompt) const;
  // Stop strings the format implies (the fallback's "\nUser:").
  std::vector<std::string> stops() const;
  bool fallback() const { return !tmpl_; }
  const std::string& source() const { return source_; }

 private:
  const Tokenizer& tok_;
  std::unique_ptr<jinja::Template> tmpl_;
  std::string source_;
};

}  // namespace endless::server

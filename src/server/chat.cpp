#include "server/chat.h"

namespace endless::server {
namespace {

// A message's content as text: a string, null, or an array of {"type": "text", "text": ...} parts.
std::string content_text(const Json& content, size_t index) {
  if (content.is_null()) return {};
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {
    std::string out;
    for (const auto& part : content) {
      if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
        throw HttpError(400, cat("messages[", index, "].content parts must be objects with a 'type'"),
                        "invalid_type", "messages");
      if (part["type"] != "text")
        throw HttpError(400, cat("messages[", index, "].content: only text parts are supported, not '",
                                 part["type"].get<std::string>(), "'"),
                        "unsupported_value", "messages");
      if (!part.contains("text") || !part["text"].is_string())
        throw HttpError(400, cat("messages[", index, "].content: a text part needs a string 'text'"),
                        "invalid_type", "messages");
      out += part["text"].get<std::string>();
    }
    return out;
  }
  throw HttpError(400, cat("messages[", index, "].content must be a string or an array of parts"), "invalid_type",
                  "messages");
}

}  // namespace

ChatFormatter::ChatFormatter(const Tokenizer& tok, std::optional<std::string> model_template,
                             std::optional<std::string> override_template)
    : tok_(tok) {
  if (override_template) {
    source_ = *override_template;
    tmpl_ = std::make_unique<jinja::Template>(source_);  // errors are the user's: let them through
  } else if (model_template && !model_template->empty()) {
    try {
      tmpl_ = std::make_unique<jinja::Template>(*model_template);
      source_ = *model_template;
    } catch (const Error& e) {
      std::fprintf(stderr, "endless serve: the model's chat template does not parse (%s); using the plain format\n",
                   e.what());
    }
  }
}

std::string ChatFormatter::render(const Json& messages, const Json& tools) const {
  if (!messages.is_array()) throw HttpError(400, "'messages' must be an array", "invalid_type", "messages");
  if (messages.empty()) throw HttpError(400, "'messages' must not be empty", "invalid_value", "messages");
  Json clean = Json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    if (!m.is_object()) throw HttpError(400, cat("messages[", i, "] must be an object"), "invalid_type", "messages");
    if (!m.contains("role") || !m["role"].is_string())
      throw HttpError(400, cat("messages[", i, "] needs a string 'role'"), "invalid_type", "messages");
    Json c = m;  // other fields (name, tool_calls, ...) go to the template as given
    c["content"] = content_text(m.contains("content") ? m["content"] : Json(), i);
    clean.push_back(std::move(c));
  }
  if (!tmpl_) {
    std::string out;
    for (const auto& m : clean) {
      std::string role = m["role"].get<std::string>();
      if (!role.empty()) role[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(role[0])));
      out += role + ": " + m["content"].get<std::string>() + "\n\n";
    }
    return out + "Assistant:";
  }
  Json ctx = {{"messages", clean},
              {"add_generation_prompt", true},
              {"bos_token", tok_.bos_id() >= 0 ? tok_.token_text(tok_.bos_id()) : ""},
              {"eos_token", tok_.eos_id() >= 0 ? tok_.token_text(tok_.eos_id()) : ""}};
  if (!tools.is_null()) {
    if (!tools.is_array()) throw HttpError(400, "'tools' must be an array", "invalid_type", "tools");
    ctx["tools"] = tools;
  }
  try {
    return tmpl_->render(ctx);
  } catch (const jinja::Exception& e) {
    throw HttpError(400, cat("the chat template rejected the messages: ", e.what()), "template_error", "messages");
  }
}

std::vector<int32_t> ChatFormatter::tokenize(const std::string& prompt) const {
  std::vector<int32_t> ids = tok_.encode(prompt, /*add_special=*/false, /*parse_special=*/true);
  if (tok_.add_bos() && tok_.bos_id() >= 0 && (ids.empty() || ids.front() != tok_.bos_id()))
    ids.insert(ids.begin(), tok_.bos_id());
  return ids;
}

std::vector<std::string> ChatFormatter::stops() const {
  if (!tmpl_) return {"\nUser:"};
  return {};
}

}  // namespace endless::server

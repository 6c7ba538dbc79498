// Renders every chat template in ../shared/templates with the conversations recorded in
// ../shared/reference/chat-templates/NAME.json and compares byte for byte with what Python's
// Jinja2, configured as Hugging Face's apply_chat_template, produced (or the error it raised).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "jinja/jinja.h"
#include "test_support.h"

namespace endless::jinja {
namespace {

constexpr const char* kReferenceDir = "reference/chat-templates";

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// One test per reference file; a single placeholder when the shared data is absent, so the
// suite reports a skip instead of silently running nothing.
std::vector<std::string> reference_names() {
  std::vector<std::string> names;
  const auto dir = endless::testing::shared_file(kReferenceDir);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  if (names.empty()) names.push_back("shared_data_absent");
  return names;
}

// The references fix strftime_now() to "28 Nov 2026".
std::tm reference_now() {
  std::tm tm{};
  tm.tm_year = 2026 - 1900;
  tm.tm_mon = 10;
  tm.tm_mday = 28;
  tm.tm_hour = 12;
  return tm;
}

class ChatTemplate : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplate, MatchesHuggingFaceRendering) {
  const std::string reference_rel = std::string(kReferenceDir) + "/" + GetParam() + ".json";
  ENDLESS_REQUIRE_SHARED(reference_rel);
  const auto reference = nlohmann::ordered_json::parse(read_file(endless::testing::shared_file(reference_rel)));
  const std::string template_rel = "templates/" + reference.at("template").get<std::string>();
  ENDLESS_REQUIRE_SHARED(template_rel);

  Options options;
  options.now = reference_now;
  const Template tmpl(read_file(endless::testing::shared_file(template_rel)), options);

  ASSERT_FALSE(reference.at("cases").empty());
  for (const auto& [case_name, conversation] : reference.at("cases").items()) {
    SCOPED_TRACE("case " + case_name);
    nlohmann::ordered_json context = nlohmann::ordered_json::object();
    for (const auto& [key, value] : reference.at("variables").items())
      if (key.find('(') == std::string::npos) context[key] = value;  // "strftime_now()" is a function
    for (const auto& [key, value] : conversation.items()) context[key] = value;

    const auto& expected = reference.at("renderings").at(case_name);
    if (expected.at("ok").get<bool>()) {
      EXPECT_EQ(tmpl.render(context), expected.at("text").get<std::string>());
    } else {
      try {
        const std::string text = tmpl.render(context);
        ADD_FAILURE() << "expected the error \"" << expected.at("error").get<std::string>() << "\", rendered:\n"
                      << text;
      } catch (const Exception& e) {
        EXPECT_EQ(std::string(e.what()), expected.at("error").get<std::string>());
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shared, ChatTemplate, ::testing::ValuesIn(reference_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

}  // namespace
}  // namespace endless::jinja

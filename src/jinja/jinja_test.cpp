#include "jinja/jinja.h"

#include <gtest/gtest.h>

namespace endless::jinja {
namespace {

std::string render(std::string_view source, const nlohmann::ordered_json& context = nlohmann::ordered_json::object()) {
  return Template(source).render(context);
}

TEST(Jinja, RendersText) { EXPECT_EQ(render("hello {{ name }}!", {{"name", "world"}}), "hello world!"); }

}  // namespace
}  // namespace endless::jinja

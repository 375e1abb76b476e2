// A nesting bound for nlohmann::json::parse. Its parser is iterative, but copying, dumping and destroying a
// document recurse once per level: hostile input nested deeply enough overflows the stack after parsing.
#pragma once

#include <nlohmann/json.hpp>

namespace gvshim {

// Thrown by the callback of DepthLimit when an array or object would start deeper than its bound.
struct JsonTooDeep {};

// A parser callback for nlohmann::json::parse that throws JsonTooDeep when an array or object starts with
// `max_depth` or more enclosing arrays/objects; catch it around the parse.
inline nlohmann::json::parser_callback_t DepthLimit(int max_depth) {
  return [max_depth](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if ((event == nlohmann::json::parse_event_t::object_start ||
         event == nlohmann::json::parse_event_t::array_start) &&
        depth >= max_depth) {
      throw JsonTooDeep{};
    }
    return true;
  };
}

}  // namespace gvshim

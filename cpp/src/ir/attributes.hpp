// Typed node attributes. Ops read them once, at load, through get/require; a missing required
// attribute or one of the wrong type is a ModelFormatError that names the node.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir/tensor.hpp"

namespace onnxplain {

struct Attribute {
  enum class Type { Undefined, Float, Int, String, Tensor, Floats, Ints, Strings, Graph } type =
      Type::Undefined;
  float f = 0.f;
  int64_t i = 0;
  std::string s;  // bytes as stored in the file (may not be valid UTF-8)
  onnxplain::Tensor t;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
};

const char* attribute_type_name(Attribute::Type t);

class AttrMap {
 public:
  /// `context` names the node for error messages, e.g. "node 'conv1' (Conv)".
  void set_context(std::string context) { context_ = std::move(context); }
  const std::string& context() const { return context_; }

  void set(const std::string& name, Attribute a) { map_[name] = std::move(a); }
  bool has(const std::string& name) const { return map_.count(name) != 0; }
  const std::map<std::string, Attribute>& all() const { return map_; }

  int64_t get_int(const std::string& name, int64_t dflt) const;
  float get_float(const std::string& name, float dflt) const;
  std::string get_string(const std::string& name, const std::string& dflt) const;
  std::vector<int64_t> get_ints(const std::string& name, const std::vector<int64_t>& dflt) const;
  std::vector<float> get_floats(const std::string& name, const std::vector<float>& dflt) const;
  const Tensor& get_tensor(const std::string& name) const;  // required

  int64_t require_int(const std::string& name) const;
  std::vector<int64_t> require_ints(const std::string& name) const;

 private:
  const Attribute& typed(const std::string& name, Attribute::Type t) const;
  std::string context_;
  std::map<std::string, Attribute> map_;
};

}  // namespace onnxplain

#include "ir/attributes.hpp"

#include "onnxplain/errors.hpp"

namespace onnxplain {

const char* attribute_type_name(Attribute::Type t) {
  switch (t) {
    case Attribute::Type::Float: return "float";
    case Attribute::Type::Int: return "int";
    case Attribute::Type::String: return "string";
    case Attribute::Type::Tensor: return "tensor";
    case Attribute::Type::Floats: return "floats";
    case Attribute::Type::Ints: return "ints";
    case Attribute::Type::Strings: return "strings";
    case Attribute::Type::Graph: return "graph";
    case Attribute::Type::Undefined: break;
  }
  return "undefined";
}

const Attribute& AttrMap::typed(const std::string& name, Attribute::Type t) const {
  auto it = map_.find(name);
  if (it == map_.end())
    throw ModelFormatError(context_ + ": required attribute '" + name + "' is missing");
  if (it->second.type != t)
    throw ModelFormatError(context_ + ": attribute '" + name + "' should be of type " +
                           attribute_type_name(t) + " but is " + attribute_type_name(it->second.type));
  return it->second;
}

int64_t AttrMap::get_int(const std::string& name, int64_t dflt) const {
  return has(name) ? typed(name, Attribute::Type::Int).i : dflt;
}
float AttrMap::get_float(const std::string& name, float dflt) const {
  return has(name) ? typed(name, Attribute::Type::Float).f : dflt;
}
std::string AttrMap::get_string(const std::string& name, const std::string& dflt) const {
  return has(name) ? typed(name, Attribute::Type::String).s : dflt;
}
std::vector<int64_t> AttrMap::get_ints(const std::string& name, const std::vector<int64_t>& dflt) const {
  return has(name) ? typed(name, Attribute::Type::Ints).ints : dflt;
}
std::vector<float> AttrMap::get_floats(const std::string& name, const std::vector<float>& dflt) const {
  return has(name) ? typed(name, Attribute::Type::Floats).floats : dflt;
}
const Tensor& AttrMap::get_tensor(const std::string& name) const {
  return typed(name, Attribute::Type::Tensor).t;
}
int64_t AttrMap::require_int(const std::string& name) const { return typed(name, Attribute::Type::Int).i; }
std::vector<int64_t> AttrMap::require_ints(const std::string& name) const {
  return typed(name, Attribute::Type::Ints).ints;
}

}  // namespace onnxplain

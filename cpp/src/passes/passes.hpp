// Graph rewrites run at load time. Each leaves the model's outputs unchanged (tests check this
// against onnxruntime), except strip_softmax, which removes a trailing Softmax on purpose.
#pragma once

#include "ir/graph.hpp"

namespace onnxplain::passes {

/// Instantiates the op of node i from the registry (nullptr stays for unsupported ops).
void instantiate(Graph& g, std::size_t i);

/// Creates every node's op, infers dtypes/shapes from the declared inputs, and folds every node
/// whose inputs are all constant into a constant (the Shape/Gather/Concat/Unsqueeze/Cast chains
/// exporters emit). Throws UnsupportedModelError listing all unsupported ops at once.
void instantiate_and_fold(Graph& g);

/// Re-runs shape inference over the whole graph (after rewrites).
void infer_shapes(Graph& g);

/// Graph outputs the engine cannot produce or explain: a ZipMap output is replaced by its input
/// (skl2onnx); non-float outputs (class labels) are dropped; then dead nodes are removed.
void prune_outputs(Graph& g);

/// Identity and Dropout (inference mode) are removed, their readers rewired.
void remove_identity(Graph& g);

/// A graph output produced by Softmax/LogSoftmax is replaced by the logits.
void strip_softmax(Graph& g);

/// BatchNormalization after a linear op (Conv, Gemm, fused MatMul) whose output nothing else
/// reads is folded into its weights and bias.
void fold_batch_norm(Graph& g);

/// MatMul with a constant right operand followed by Add of a constant vector becomes one MatMul
/// node with a bias input (tf2onnx's and skl2onnx's Dense), so reverse passes see one layer.
void fuse_matmul_add(Graph& g);

}  // namespace onnxplain::passes

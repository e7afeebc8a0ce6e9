// layers::set_router_observer, which the GPU parity test uses to explain bf16 routing flips: on a
// single-rank CPU runner it sees every MoE layer's router logits of a forward, on the caller's thread.
#include <gtest/gtest.h>

#include "loom/layers/moe.h"
#include "loom/runtime/generate.h"
#include "model/reference.h"

using namespace loom;

TEST(RouterObserver, SeesEveryMoeLayersLogitsOfAForward) {
  runtime::RunnerOptions o;
  o.model_path = loom::testing::model_dir("tiny-mixtral");
  o.max_total_tokens = 256;
  auto runner = runtime::create_runner(o);
  std::vector<Shape> seen;
  layers::set_router_observer([&](const Tensor& logits) { seen.push_back(logits.shape()); });
  runtime::prompt_logits(*runner, {1, 2, 3, 4, 5}, false);
  layers::set_router_observer({});
  ASSERT_EQ(seen.size(), 2u);  // two MoE layers
  for (const Shape& s : seen) EXPECT_EQ(s, (Shape{5, 4}));
  runtime::prompt_logits(*runner, {1, 2, 3}, false);
  EXPECT_EQ(seen.size(), 2u) << "the observer was removed";
}

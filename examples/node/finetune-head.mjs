// Fine-tune the head of a ResNet-18 on an image folder and save it.
// usage: node finetune-head.mjs resnet18.pth data/ model.safetensors
//   data/train/<class>/*.jpg and data/test/<class>/*.jpg; resnet18.pth as torch.save(model.state_dict()) writes it
import { readdirSync } from 'node:fs';
import {
  createNodeRuntime, readStateDictFile, resnet18, replaceHead, SGD, fitImageFolders, saveModel, loadImage, predict,
} from 'hotdog-webgpu/node';

const [weights, data, out] = process.argv.slice(2);
const imageSize = Number(process.env.IMAGE_SIZE ?? 224);

const rt = await createNodeRuntime();                       // WebGPU through Dawn (a GPU, or lavapipe on a CPU)
try {
  const model = resnet18(rt, { numClasses: 1000 });         // torchvision.models.resnet18()
  model.loadStateDict(await readStateDictFile(weights));    // strict, with torch's missing/unexpected-key errors
  replaceHead(model, 2);                                    // model.fc = nn.Linear(512, 2), xavier-initialised
  model.requiresGrad(false);                                // freeze the body...
  model.fc.requiresGrad(true);                              // ...and train the head only
  const optimizer = new SGD([{ params: model.fc.parameters(), lr: 0.01 }], { lr: 0.01, momentum: 0.9 });

  const { classes, history } = await fitImageFolders(model, optimizer, {
    train: `${data}/train`, test: `${data}/test`, epochs: 2, batchSize: 8, imageSize,
    onEpoch: (m) => console.log(`epoch ${m.epoch}: loss ${m.loss.toFixed(3)}, train acc ${m.trainAcc.toFixed(3)}, test acc ${m.testAcc.toFixed(3)}`),
  });
  await saveModel(model, out, { classes, imageSize });      // safetensors with the class names and image size

  const folder = `${data}/test/${classes[0]}`;
  const [p] = await predict(model, [await loadImage(`${folder}/${readdirSync(folder)[0]}`)], { imageSize, classes });
  console.log(JSON.stringify({ epochs: history.length, saved: out, prediction: p.className, probabilities: p.probabilities }));
} finally {
  rt.destroy();
}
